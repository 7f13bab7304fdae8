"""Reading weight files a user provides, and loading them with errors that say what is wrong."""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

#: Keys under which training scripts commonly wrap a state dict.
WRAPPER_KEYS = ("state_dict", "model")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a local weight file, unwrapped and with any ``module.`` prefix removed.

    Loaded with ``weights_only=True`` (no code from the file runs). A checkpoint that wraps the
    weights under ``"state_dict"`` or ``"model"`` is unwrapped; ``module.`` prefixes left by
    ``DataParallel``/``DistributedDataParallel`` are stripped.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weight file {path} does not exist; give the path of a local .pth/.pt file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a foreign or corrupt file
        raise ValueError(f"cannot read weight file {path}: {type(error).__name__}: {error}") from None
    for key in WRAPPER_KEYS:
        if isinstance(content, Mapping) and isinstance(content.get(key), Mapping):
            content = content[key]
            break
    if not isinstance(content, Mapping) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ValueError(f"weight file {path} does not hold a state dict (a mapping of names to tensors)")
    return {_strip_prefix(k, "module."): v for k, v in content.items()}


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def load_weights(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict ``load_state_dict`` whose error names the ``source``, and the missing, unexpected
    and mis-shaped keys, instead of torch's generic message. Absent BatchNorm
    ``num_batches_tracked`` counters are not an error."""
    own = module.state_dict()
    # Files from older PyTorch versions lack BatchNorm's step counter; it holds no weight.
    state_dict = {**{k: v for k, v in own.items() if k.endswith(".num_batches_tracked")}, **state_dict}
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or misshaped:
        problems = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                problems.append(f"{len(keys)} {what} keys (e.g. {', '.join(keys[:5])})")
        if misshaped:
            k = misshaped[0]
            problems.append(f"{len(misshaped)} keys of the wrong shape (e.g. {k}: file "
                            f"{tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})")
        raise ValueError(f"weights from {source} do not fit {type(module).__name__}: " + "; ".join(problems)
                         + ". Check that the file is for this architecture (and its options).")
    module.load_state_dict(state_dict)
