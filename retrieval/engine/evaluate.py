"""Evaluate a model on every configured target: extract features, apply the target's protocol."""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import torch

from retrieval.config import Component, Config
from retrieval.data.loading import ImageDataset
from retrieval.data.split import Split, load_splits
from retrieval.data.transforms import build_transform
from retrieval.engine.distributed import Topology, gather_features

DATA_ROOT_ENV = "RETRIEVAL_DATA_ROOT"


def dataset_root(dataset: Component, root: str | None) -> str | None:
    """An explicit root, else ``$RETRIEVAL_DATA_ROOT/<name>`` when that variable is set."""
    if root is not None:
        return root
    base = os.environ.get(DATA_ROOT_ENV)
    return os.path.join(base, dataset.name) if base else None


@lru_cache(maxsize=8)
def _cached_splits(name: str, root: str | None, frozen_args: tuple) -> dict[str, Split]:
    return load_splits(name, root=root, **dict(frozen_args))


def splits_of(dataset: Component, root: str | None) -> dict[str, Split]:
    """The dataset's splits, parsed once per process (parsing big lists is not free)."""
    frozen = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in dataset.args.items()))
    return _cached_splits(dataset.name, dataset_root(dataset, root), frozen)


def pick_split(splits: dict[str, Split], name: str, dataset: str) -> Split:
    if name not in splits:
        raise KeyError(f"dataset {dataset!r} has no split {name!r}; it has {sorted(splits)}")
    return splits[name]


def metric_name(target: str, split: str, metric: str, cfg: Config) -> str:
    """Prefix target and split names only where the config has several of them."""
    parts = []
    if len(cfg.eval.targets) > 1:
        parts.append(target)
    if len(cfg.eval.targets[target].splits) > 1:
        parts.append(split)
    return "/".join([*parts, metric])


def sharded_features(model, split: Split, cfg: Config, device, progress: bool, topology: Topology) -> torch.Tensor:
    """Descriptors of every item of ``split``; with several processes each extracts a strided shard."""
    from retrieval.engine.extract import extract_features, multiscale_settings

    shard = split.subset(np.arange(topology.rank, len(split), topology.world_size)) if topology.distributed \
        else split
    images = ImageDataset(shard, build_transform(cfg.data.test_transform), crop_boxes=cfg.data.crop_boxes,
                          bad_images="skip")  # extract_features then names every unreadable image, drops none
    features = extract_features(model, images, batch_size=cfg.eval.batch_size, device=device,
                                num_workers=cfg.data.num_workers, progress=progress, **multiscale_settings(cfg.eval))
    return gather_features(features.to(device), len(split), topology).cpu()


def evaluate(model, cfg: Config, device, progress: bool = True, topology: Topology | None = None) -> dict[str, float]:
    from retrieval.evaluation import PROTOCOLS

    topology = topology or Topology()
    metrics: dict[str, float] = {}
    for target_name, target in cfg.eval.targets.items():
        dataset = target.dataset or cfg.data.dataset
        root = target.root if target.dataset is not None else cfg.data.root
        splits = splits_of(dataset, root)
        protocol = PROTOCOLS.get(target.protocol.name)
        for split_name in target.splits:
            split = pick_split(splits, split_name, dataset.name)
            features = sharded_features(model, split, cfg, device, progress, topology)
            for key, value in protocol(features, split, **target.protocol.args).items():
                metrics[metric_name(target_name, split_name, key, cfg)] = float(value)
    return metrics
