"""A trained model ready for use: from a run directory, a model file (which carries its config), or a table row.

A run directory holds the resolved ``config.yaml`` it was trained under and ``model.pt``; a model file written
by training (``model.pt``, ``best_model.pt``, a checkpoint) also embeds that config, so it can be shared alone.
An explicit config file still overrides either, and dotted overrides apply on top.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from retrieval.config import Config, ConfigError, config_from_dict, load_config
from retrieval.config.loader import apply_overrides
from retrieval.engine.checkpoint import read_checkpoint
from retrieval.engine.run_dir import CONFIG

MODEL_FILE = "model.pt"


@dataclass
class SavedModel:
    """``model`` in eval mode on ``device``, the ``cfg`` it was trained under, and the ``path`` it came from."""

    model: nn.Module
    cfg: Config
    path: Path
    device: torch.device

    def transform(self):
        """The test-time transform of the config (what evaluation applies to every image)."""
        from retrieval.data.transforms import build_transform

        return build_transform(self.cfg.data.test_transform)


def model_file(source: str | Path) -> Path:
    """``source`` itself when it is a file, else its ``model.pt``; FileNotFoundError saying how to get one."""
    source = Path(source)
    if source.is_file():
        return source
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is neither a run directory nor a model file")
    path = source / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{source} has no {MODEL_FILE}: the run is unfinished (run the same train "
                                "command again to finish it) or this is not a run directory")
    return path


def run_config(source: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
               saved: dict | None = None) -> Config:
    """The config of a run or model: ``config`` if given, else the run's ``config.yaml``, else the one the
    model file embeds; ``overrides`` (``key=value``) apply on top. ConfigError when none is found."""
    source = Path(source)
    run_yaml = (source if source.is_dir() else source.parent) / CONFIG
    if config is not None:
        return load_config(config, overrides)
    if run_yaml.is_file():
        return load_config(run_yaml, overrides)
    if saved is not None and isinstance(saved.get("config"), dict):
        data = apply_overrides(saved["config"], {}, overrides, "the command line") if overrides else saved["config"]
        return config_from_dict(data)
    raise ConfigError(f"{source}: no {CONFIG} beside it and no config inside it; pass --config FILE")


def load_saved_model(source: str | Path, config: str | Path | None = None, overrides: Sequence[str] = (),
                     device: str | torch.device | None = None) -> SavedModel:
    """The model of a run directory or model file, in eval mode (see :func:`run_config` for its config).

    ``device``: default the config's ``train.device`` (``auto``: a GPU when there is one). Errors:
    FileNotFoundError (no model), CheckpointError (unreadable file), ConfigError (no or invalid config).
    """
    from retrieval.engine.distributed import resolve_device
    from retrieval.engine.trainer import load_trained_model

    path = model_file(source)
    saved = read_checkpoint(path)
    cfg = run_config(source, config, overrides, saved)
    device = resolve_device(cfg.train.device if device is None else str(device))
    return SavedModel(load_trained_model(cfg, saved, device, path), cfg, path, device)
