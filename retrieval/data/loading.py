"""A torch Dataset over a Split: image source, optional box crop, transform, bad-image policy."""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from retrieval.data.images import ImageLoadError, load_image
from retrieval.data.split import Split

BAD_IMAGE_POLICIES = ("error", "skip")


class ImageDataset(Dataset):
    """Items of ``split`` as ``(image_tensor, label, index)``.

    A key is an index, or ``(index, seed)``: the seed fixes this item's random augmentation,
    so a batch is the same whichever worker loads it and whether or not the run was resumed.
    With ``bad_images="skip"`` an unreadable image yields ``(None, label, index)``;
    :func:`collate_skipping` drops it and reports its index, so the run can count it.
    """

    def __init__(self, split: Split, transform, crop_boxes: bool = False, bad_images: str = "error"):
        if bad_images not in BAD_IMAGE_POLICIES:
            raise ValueError(f"bad_images must be one of {BAD_IMAGE_POLICIES}, got {bad_images!r}")
        self.split, self.transform = split, transform
        self.crop_boxes, self.bad_images = crop_boxes and split.boxes is not None, bad_images

    def __len__(self) -> int:
        return len(self.split)

    def path(self, index: int) -> str:
        relative = self.split.paths[index]
        return os.path.join(self.split.root, relative) if self.split.root else relative

    def pil_image(self, index: int) -> Image.Image:
        if self.split.images is not None:
            image = Image.fromarray(np.asarray(self.split.images[index]))
        else:
            image = load_image(self.path(index))
        if self.crop_boxes:
            box = self.split.boxes[index]
            if not any(math.isnan(float(v)) for v in box):
                image = image.crop(tuple(int(round(float(v))) for v in box))
        return image

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        try:
            image = self.pil_image(index)
        except ImageLoadError:
            if self.bad_images == "error":
                raise
            return None, int(self.split.labels[index]), int(index)
        if seed is None:
            return self.transform(image), int(self.split.labels[index]), int(index)
        # The transforms draw from the global CPU generator: seed it for this item only and put its state back,
        # so the state a checkpoint saves is the training's own (CUDA generators are left alone: not used here).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return self.transform(image), int(self.split.labels[index]), int(index)


class Batch(NamedTuple):
    images: torch.Tensor | ChunkedBatch | None  # ChunkedBatch: read inside a multistage step (chunked_batches)
    labels: torch.Tensor
    indices: torch.Tensor
    skipped: list[int]


def collate_skipping(items) -> Batch:
    """Stack the readable items; the indices of skipped (unreadable) ones go to ``skipped``."""
    kept = [item for item in items if item[0] is not None]
    skipped = [item[2] for item in items if item[0] is None]
    if not kept:
        return Batch(None, torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), skipped)
    images, labels, indices = zip(*kept)
    return Batch(torch.stack(images), torch.tensor(labels), torch.tensor(indices), skipped)


class _ByPosition(Dataset):
    """Item ``position`` of a batch's keys, with its position in place of its dataset index."""

    def __init__(self, dataset: ImageDataset, keys: list):
        self.dataset, self.keys = dataset, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, position: int):
        image, label, _ = self.dataset[self.keys[position]]
        return image, label, position


class ChunkedBatch:
    """One batch's keys, read a chunk at a time (a ``multistage.ChunkSource``): only a chunk's images are
    decoded and held at once, and a chunk read again is the same (each item's augmentation is seeded).

    ``skipped`` collects the dataset indices of the unreadable images met while reading.
    ``num_workers``/``pin_memory`` as for a DataLoader, which reads the chunks in order.
    """

    def __init__(self, dataset: ImageDataset, keys: list, num_workers: int = 0, pin_memory: bool = False):
        self.dataset, self.keys = dataset, list(keys)
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.skipped: list[int] = []

    def __len__(self) -> int:
        return len(self.keys)

    def read(self, slices: list[slice]):
        positions = list(range(len(self.keys)))
        loader = DataLoader(_ByPosition(self.dataset, self.keys), batch_sampler=[positions[s] for s in slices],
                            collate_fn=collate_skipping, num_workers=self.num_workers, pin_memory=self.pin_memory)
        for batch in loader:
            self.skipped.extend(_index(self.keys[p]) for p in batch.skipped)
            if batch.images is None:
                yield torch.empty(0), batch.labels, batch.indices
            else:
                yield batch.images, batch.labels, batch.indices

    def subset(self, positions: torch.Tensor) -> ChunkedBatch:
        return ChunkedBatch(self.dataset, [self.keys[p] for p in positions.tolist()], self.num_workers,
                            self.pin_memory)

    def to(self, *args, **kwargs) -> ChunkedBatch:
        """Itself: each chunk moves to the model's device when it is read."""
        return self


def _index(key) -> int:
    return int(key[0] if isinstance(key, tuple) else key)


def chunked_batches(dataset: ImageDataset, batch_sampler, num_workers: int = 0, pin_memory: bool = False):
    """A loader for multistage backprop: per batch of keys, a :class:`Batch` whose ``images`` is a
    :class:`ChunkedBatch` (nothing decoded yet) and whose ``skipped`` fills as its chunks are read."""
    for keys in batch_sampler:
        chunked = ChunkedBatch(dataset, keys, num_workers, pin_memory)
        indices = torch.tensor([_index(key) for key in chunked.keys])
        yield Batch(chunked, torch.as_tensor(dataset.split.labels[indices.numpy()]), indices, chunked.skipped)
