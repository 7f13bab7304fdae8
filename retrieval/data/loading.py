"""A torch Dataset over a Split: image source, optional box crop, transform, bad-image policy."""
from __future__ import annotations

import math
import os
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

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
        if seed is not None:
            torch.random.default_generator.manual_seed(seed)  # the CPU generator only: torch.manual_seed
            # would also seed every CUDA device, which costs more than transforming a small image
        return self.transform(image), int(self.split.labels[index]), int(index)


class Batch(NamedTuple):
    images: torch.Tensor | None
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
