"""Load the released checkpoints of two landmark-retrieval model zoos into our own models.

Each file becomes a :class:`~retrieval.models.net.RetrievalNet` (our ResNet backbone, our pooling in
an ``embedding`` head, our :class:`~retrieval.models.whitening.Whitening`), so it can be evaluated,
fine-tuned or used as a starting point like any of ours. Files are read with the restricted
unpickler (:func:`retrieval.data.safe_pickle.load_torch`): tensors, plain data and scikit-learn's PCA
(kept as a dict of its fields) load; anything else is refused, naming it, before it runs.

Layouts, as the authors' code writes and reads them:

- deep-image-retrieval (``dirtorch/test_dir.py``, ``dirtorch/nets``): ``model_options`` (``arch``
  such as ``resnet101_rmac``, ``out_dim``, ``pooling`` gem/max/avg, ``gemp``, ``norm_features``...),
  ``state_dict`` (keys possibly prefixed ``module.``; ``adpool.p`` the GeM exponent, ``fc`` the
  projection), ``preprocess`` (``mean``, ``std``) and ``pca``: per training dataset a fitted
  scikit-learn PCA, applied as ``(x - mean_) @ components_.T / explained_variance_^power`` and
  re-normalised (:func:`~retrieval.evaluation.postprocess.pca_power_projection`).
- cnnimageretrieval-pytorch (``cirtorch/networks/imageretrievalnet.py``, ``cirtorch/examples/test.py``):
  ``state_dict`` (``features.N`` the torchvision ResNet's children without pooling and classifier,
  ``pool.p``, ``whiten`` the end-to-end learned whitening applied after an L2 normalisation) and
  ``meta`` (``architecture``, ``pooling``, ``whitening``, ``mean``, ``std`` and optionally ``Lw``:
  per dataset ``ss``/``ms`` learned whitening ``{"m": (D, 1), "P": (D, D)}`` applied as ``P (x - m)``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from retrieval.data.safe_pickle import load_torch
from retrieval.evaluation.postprocess import pca_power_projection
from retrieval.models import RetrievalNet, Whitening, build_model

#: scikit-learn's PCA as pickled by 0.20-0.21 (``sklearn.decomposition.pca``) and by later versions.
PCA_NAMES = (("sklearn.decomposition.pca", "PCA"), ("sklearn.decomposition._pca", "PCA"))
#: The torchvision ResNet children cirtorch keeps as ``features`` (children()[:-2]), by index.
CIRTORCH_FEATURES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
DIRTORCH_POOLINGS = {"gem": "gem", "max": "mac", "avg": "spoc"}
#: Every argument dirtorch's ``create_model`` passes on to ``ResNet_RMAC`` (and the ResNet under it). Those
#: in :data:`DIRTORCH_UNSUPPORTED` change the descriptor in a way our models do not reproduce when set.
DIRTORCH_OPTIONS = {"arch", "delete_fc", "out_dim", "pooling", "gemp", "norm_features", "without_fc", "center_bias",
                    "dropout_p", "scales", "self_similarity_radius", "self_similarity_version"}
DIRTORCH_UNSUPPORTED = ("center_bias", "self_similarity_radius")


class PickledPCA(dict):
    """Stands in for a pickled scikit-learn PCA: its fields (``mean_``, ``components_``,
    ``explained_variance_``, ``whiten``...) are kept as dict items; no scikit-learn code runs."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise TypeError(f"a pickled PCA holds a dict of fields, not a {type(state).__name__}")
        self.update(state)


class ZooFormatError(ValueError):
    """A released file that does not have its layout's keys, names the file and what is missing."""


@dataclass
class LoadedNet:
    """A released network as one of our models, with the input normalisation it was trained with.

    ``whitenings``: every whitening the file holds, by name (the model carries the chosen one).
    """

    model: RetrievalNet
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    whitenings: dict[str, Whitening] = field(default_factory=dict)
    scale_power: float = 1.0


def read_checkpoint(path) -> dict:
    """The released file at ``path`` as a dict, read without running code."""
    content = load_torch(path, {name: PickledPCA for name in PCA_NAMES})
    if not isinstance(content, dict):
        raise ZooFormatError(f"{path}: expected a dict, found {type(content).__name__}")
    return content


def _require(mapping: dict, keys, what: str, path) -> None:
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ZooFormatError(f"{path}: {what} lacks {missing} (has {sorted(map(str, mapping))})")


def _backbone_arch(name: str, path) -> str:
    if name not in ("resnet18", "resnet50", "resnet101", "resnet152"):
        raise ZooFormatError(f"{path}: architecture {name!r} is not one of our backbones (ResNet-18/50/101/152)")
    return name


def _build(arch: str, pooling: str, p: float | None, dim: int | None, normalize_pooled: bool) -> RetrievalNet:
    pooling_args = {"p": p, "learn_p": True} if pooling == "gem" else {}
    head = {"pooling": pooling, "pooling_args": pooling_args, "dim": dim, "normalize_pooled": normalize_pooled}
    return build_model(arch, {"pretrained": None}, "embedding", head, num_classes=0)


def _load_weights(model: RetrievalNet, weights: dict[str, torch.Tensor], path) -> None:
    """Load strictly, except BatchNorm's ``num_batches_tracked`` (absent from pre-0.4.1 files, unused in eval)."""
    own = model.state_dict()
    for key, value in own.items():
        if key.endswith("num_batches_tracked") and key not in weights:
            weights[key] = value
    missing, unexpected = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or unexpected:
        raise ZooFormatError(f"{path}: its state_dict does not match the network it describes; missing "
                             f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected "
                             f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    model.load_state_dict(weights)
    model.eval()


def _tensor(value) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)


def pca_whitening(pca: dict, power: float, path, name: str) -> Whitening:
    """Our Whitening equal to deep-image-retrieval's ``whiten_features`` with a stored PCA and ``power``."""
    _require(pca, ("components_", "explained_variance_"), f"PCA {name!r}", path)
    components = _tensor(pca["components_"]).double()
    mean = pca.get("mean_")
    mean = torch.zeros(components.shape[1], dtype=torch.float64) if mean is None else _tensor(mean).double()
    projection = pca_power_projection(components, _tensor(pca["explained_variance_"]), power=power,
                                      whiten=bool(pca.get("whiten", True)))
    return Whitening(mean.reshape(-1), projection)


def load_dirtorch(path, whitening: str | None = "Landmarks_clean", whitening_power: float = 0.25) -> LoadedNet:
    """A deep-image-retrieval checkpoint as our model, whitened with its PCA ``whitening`` (None: not whitened)."""
    content = read_checkpoint(path)
    _require(content, ("model_options", "state_dict"), "the checkpoint", path)
    options = dict(content["model_options"])
    _require(options, ("arch",), "model_options", path)
    unknown = sorted(set(options) - DIRTORCH_OPTIONS)
    if unknown:
        raise ZooFormatError(f"{path}: model_options {unknown} are not arguments of deep-image-retrieval's networks")
    unsupported = [key for key in DIRTORCH_UNSUPPORTED if options.get(key)]
    if unsupported:
        raise ZooFormatError(f"{path}: model_options {unsupported} change the descriptor in a way our models do not "
                             "reproduce")
    arch = _backbone_arch(str(options["arch"]).removesuffix("_rmac"), path)
    pooling = str(options.get("pooling", "gem"))
    if pooling.startswith("gem"):
        pooling = "gem"
    if pooling not in DIRTORCH_POOLINGS:
        raise ZooFormatError(f"{path}: pooling {pooling!r} is not one of {sorted(DIRTORCH_POOLINGS)}")
    without_fc = bool(options.get("without_fc", False))
    weights = {}
    for key, value in content["state_dict"].items():
        key = key.removeprefix("module.")
        if without_fc and key.startswith("fc."):  # ResNet_RMAC builds its fc even when it does not use it
            continue
        if key.startswith("adpool."):
            key = "head.pool." + key.removeprefix("adpool.")
        elif key.startswith("fc."):
            key = "head." + key
        else:
            key = "backbone." + key
        weights[key] = value
    dim = None if without_fc else int(options.get("out_dim", 2048))
    model = _build(arch, DIRTORCH_POOLINGS[pooling], float(options.get("gemp", 3)), dim,
                   bool(options.get("norm_features", False)))
    _load_weights(model, weights, path)
    preprocess = dict(content.get("preprocess") or {})
    pcas = dict(content.get("pca") or {})
    whitenings = {str(name): pca_whitening(pca, whitening_power, path, name) for name, pca in pcas.items()}
    loaded = LoadedNet(model, tuple(preprocess.get("mean", (0.485, 0.456, 0.406))),
                       tuple(preprocess.get("std", (0.229, 0.224, 0.225))), whitenings)
    return _choose_whitening(loaded, whitening, path)


def load_cirtorch(path, whitening: str | None = None, multiscale: bool = False) -> LoadedNet:
    """A cnnimageretrieval-pytorch checkpoint as our model.

    ``whitening``: a learned whitening stored in ``meta['Lw']`` (e.g. ``retrieval-SfM-120k``), its
    multi-scale version when ``multiscale``; None keeps the network's own (end-to-end) whitening only.
    """
    content = read_checkpoint(path)
    _require(content, ("meta", "state_dict"), "the checkpoint", path)
    meta = dict(content["meta"])
    _require(meta, ("architecture", "pooling", "mean", "std"), "meta", path)
    for flag in ("local_whitening", "regional"):
        if meta.get(flag, False):
            raise ZooFormatError(f"{path}: meta[{flag!r}] is set; only global pooling networks are supported")
    arch = _backbone_arch(str(meta["architecture"]), path)
    pooling = str(meta["pooling"])
    if pooling not in ("gem", "mac", "spoc"):
        raise ZooFormatError(f"{path}: pooling {pooling!r} is not one of gem, mac, spoc")
    weights = {}
    for key, value in content["state_dict"].items():
        head, _, rest = key.partition(".")
        if head == "features":
            index, _, rest = rest.partition(".")
            key = f"backbone.{CIRTORCH_FEATURES[int(index)]}.{rest}"
        elif head == "whiten":
            key = "head.fc." + rest
        elif head == "pool":
            key = "head.pool." + rest
        weights[key] = value
    whitened = bool(meta.get("whitening", False))
    p = float(weights["head.pool.p"].reshape(-1)[0]) if "head.pool.p" in weights else None
    dim = int(weights["head.fc.weight"].shape[0]) if whitened and "head.fc.weight" in weights else None
    model = _build(arch, pooling, p, dim, normalize_pooled=whitened)
    _load_weights(model, weights, path)
    learned = {}
    for name, variants in dict(meta.get("Lw") or {}).items():
        for variant, lw in dict(variants).items():
            _require(lw, ("m", "P"), f"meta['Lw'][{name!r}][{variant!r}]", path)
            learned[f"{name}/{variant}"] = Whitening(_tensor(lw["m"]).double().reshape(-1), _tensor(lw["P"]).double())
    # cirtorch's test.py combines scales with the GeM exponent only for networks without a whitening layer.
    scale_power = p if pooling == "gem" and not whitened and p is not None else 1.0
    loaded = LoadedNet(model, tuple(meta["mean"]), tuple(meta["std"]), learned, scale_power)
    key = None if whitening is None else f"{whitening}/{'ms' if multiscale else 'ss'}"
    return _choose_whitening(loaded, key, path)


def _choose_whitening(loaded: LoadedNet, name: str | None, path) -> LoadedNet:
    if name is not None:
        if name not in loaded.whitenings:
            raise ZooFormatError(f"{path} holds no whitening {name!r}; it holds {sorted(loaded.whitenings) or 'none'}")
        loaded.model.whitening = loaded.whitenings[name]
    return loaded
