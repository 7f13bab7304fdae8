"""Batch samplers. Each batch is a list of ``(index, seed)`` keys for ImageDataset.

A batch is a pure function of (seed, epoch, batch number), so a resumed run, a run with more
loader workers or a run sharded over several processes sees exactly the same global batches.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

SMALL_CLASS_POLICIES = ("repeat", "drop")


def _item_seeds(seed: int, epoch: int, batch: int, size: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch, batch, 1)).integers(0, 2**31 - 1, size=size)


class _EpochBatches(ABC):
    """Shared mechanics: epoch, per-rank sharding of the global batch, resumption offset."""

    def __init__(self, batch_size: int, seed: int, rank: int, world_size: int):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch, self.start_batch = 0, 0
        self._cache: tuple[int, list[np.ndarray]] | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch; ``start_batch`` skips batches already done (resume mid-epoch)."""
        self.epoch, self.start_batch = epoch, start_batch

    @abstractmethod
    def _plan(self, rng: np.random.Generator) -> list[np.ndarray]:
        """Every global batch (item indices) of one epoch, drawn from ``rng``."""

    def global_batches(self) -> list[np.ndarray]:
        """The current epoch's global batches (cheap index arithmetic, cached per epoch)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._plan(np.random.default_rng((self.seed, self.epoch, 0))))
        return self._cache[1]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        share = self.batch_size // self.world_size
        batches = self.global_batches()
        for number in range(self.start_batch, len(self)):
            indices = batches[number]
            seeds = _item_seeds(self.seed, self.epoch, number, len(indices))
            lo, hi = self.rank * share, (self.rank + 1) * share
            yield [(int(i), int(s)) for i, s in zip(indices[lo:hi], seeds[lo:hi])]


class ClassBalancedBatchSampler(_EpochBatches):
    """Global batches of P classes x K samples, contiguous by class.

    Per epoch, classes are drawn without replacement (reshuffled when exhausted), and each
    class serves its images in a shuffled cycle, so every image is seen before any repeats.
    Classes with fewer than K images: ``small_classes="repeat"`` (default) fills the K slots
    by cycling their images again; ``"drop"`` excludes them. Classes with a single image are
    always excluded: they offer no positive pair. The epoch length is
    ``len(labels) // batch_size`` batches unless ``batches_per_epoch`` is given.
    """

    def __init__(self, labels, samples_per_class: int, batch_size: int, seed: int = 0,
                 small_classes: str = "repeat", batches_per_epoch: int | None = None,
                 rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, seed, rank, world_size)
        if small_classes not in SMALL_CLASS_POLICIES:
            raise ValueError(f"small_classes must be one of {SMALL_CLASS_POLICIES}, got {small_classes!r}")
        if samples_per_class < 1 or batch_size % samples_per_class:
            raise ValueError(f"batch size {batch_size} is not a multiple of samples_per_class {samples_per_class}")
        labels = np.asarray(labels)
        self.k, self.p = samples_per_class, batch_size // samples_per_class
        minimum = samples_per_class if small_classes == "drop" else 2
        classes, counts = np.unique(labels, return_counts=True)
        self.classes = classes[counts >= minimum]
        if len(self.classes) < self.p:
            raise ValueError(f"{self.p} classes per batch requested but only {len(self.classes)} classes "
                             f"have at least {minimum} images")
        self.members = {c: np.flatnonzero(labels == c) for c in self.classes}
        self.num_batches = batches_per_epoch or max(1, len(labels) // batch_size)

    def __len__(self) -> int:
        return self.num_batches

    def _plan(self, rng: np.random.Generator) -> list[np.ndarray]:
        cycles = {c: rng.permutation(m) for c, m in self.members.items()}
        served = dict.fromkeys(self.classes, 0)
        order: list = []
        batches = []
        for _ in range(self.num_batches):
            if len(order) < self.p:
                # Refill so that no class can appear twice in one batch.
                pending = set(order)
                order += [c for c in rng.permutation(self.classes) if c not in pending]
            chosen, order = order[: self.p], order[self.p:]
            batch = []
            for c in chosen:
                cycle = cycles[c]
                picks = [cycle[(served[c] + j) % len(cycle)] for j in range(self.k)]
                served[c] += self.k
                batch.extend(picks)
            batches.append(np.asarray(batch))
        return batches


class RandomBatchSampler(_EpochBatches):
    """Uniformly shuffled batches without class structure (the "class sampling off" ablation)."""

    def __init__(self, num_items: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__(batch_size, seed, rank, world_size)
        self.num_items = num_items

    def __len__(self) -> int:
        return max(1, self.num_items // self.batch_size)

    def _plan(self, rng: np.random.Generator) -> list[np.ndarray]:
        order = rng.permutation(self.num_items)
        return [order[n * self.batch_size:(n + 1) * self.batch_size] for n in range(len(self))]
