"""Configs: YAML with ``_base_`` inheritance and dotted overrides, validated into :class:`Config`.

>>> cfg = load_config("experiments/demo/quickstart.yaml", ["train.epochs=3"])
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import yaml

from retrieval.config.loader import ConfigError, apply_overrides, load_yaml_tree
from retrieval.config.schema import (
    Component,
    Config,
    DataConfig,
    EvalConfig,
    EvalTarget,
    LossTerm,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    TrainConfig,
)
from retrieval.config.validate import Where, build_dataclass

__all__ = ["Component", "Config", "ConfigError", "DataConfig", "EvalConfig", "EvalTarget", "LossTerm",
           "ModelConfig", "OptimizerConfig", "ScheduleConfig", "TrainConfig", "config_hash", "config_to_dict",
           "dump_config", "load_config", "config_from_dict"]


def config_from_dict(data: dict, sources: dict[str, str] | None = None) -> Config:
    """A validated :class:`Config`; its ``where`` names a key's source for later errors (not a config field)."""
    where = Where(sources or {})
    cfg = build_dataclass(Config, data, "", where)
    cfg.where = where
    return cfg


def load_config(path: str | Path, *override_layers, source: str = "the command line") -> Config:
    """Read ``path`` with its ``_base_`` files, apply each layer of overrides in order, validate.

    A layer is a list of ``key.sub=value`` strings or a mapping of dotted keys to values.
    """
    data, sources = load_yaml_tree(path)
    for layer in override_layers:
        data = apply_overrides(data, sources, layer or (), source)
    return config_from_dict(data, sources)


def config_to_dict(cfg) -> dict:
    """Plain data (tuples as lists) that :func:`config_from_dict` turns back into ``cfg``."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(cfg)


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


#: Keys that change only what a run shows a person, not its results: left out of :func:`config_hash`, so that
#: turning them on does not make committed results stale.
NOT_HASHED = (("train", "tensorboard"),)


def config_hash(cfg: Config) -> str:
    """A short stable digest of the fully resolved config (keys results of table rows), less :data:`NOT_HASHED`."""
    data = config_to_dict(cfg)
    for section, key in NOT_HASHED:
        data[section].pop(key, None)
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
