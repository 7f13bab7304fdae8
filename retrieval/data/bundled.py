"""Datasets that need no download: scikit-learn's handwritten digits and a procedural generator."""
from __future__ import annotations

import numpy as np

from retrieval.data.split import DATASETS, Split


def class_disjoint(labels: np.ndarray, train_classes) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, test) splitting by class, as CUB-200 and CARS196 are split."""
    train = np.isin(labels, np.asarray(list(train_classes)))
    return train, ~train


#: Datasets made in memory (from scikit-learn or generated): they read no files, so they take no root.
BUNDLED = ("digits", "synthetic")


@DATASETS.register("digits")
def digits(root: str | None = None, train_classes: tuple[int, ...] = (0, 1, 2, 3, 4)) -> dict[str, Split]:
    """The 1,797 real 8x8 digits bundled with scikit-learn, as RGB uint8; test = the other classes."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    gray = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(gray[..., None], 3, axis=-1)
    labels = bunch.target.astype(np.int64)
    full = Split("digits", labels=labels, images=images)
    train, test = class_disjoint(labels, train_classes)
    return {"train": full.subset(train, "train"), "test": full.subset(test, "test")}


class SyntheticImages:
    """Deterministic class-structured images, generated on access (any scale, no memory).

    A class is a fixed layout of coloured Gaussian blobs; an image of it shifts the layout,
    jitters colour and brightness, adds one random distractor blob and pixel noise, so the
    class is recognisable but no two images are equal.
    """

    def __init__(self, num_classes: int, images_per_class: int, image_size: int, seed: int,
                 blobs: int = 3, noise: float = 0.08):
        self.num_classes, self.images_per_class = num_classes, images_per_class
        self.size, self.seed, self.blobs, self.noise = image_size, seed, blobs, noise
        grid = np.linspace(0.0, 1.0, image_size, dtype=np.float32)
        self._yy, self._xx = np.meshgrid(grid, grid, indexing="ij")

    def __len__(self) -> int:
        return self.num_classes * self.images_per_class

    def _class_layout(self, label: int):
        rng = np.random.default_rng((self.seed, 0, label))
        centres = rng.uniform(0.2, 0.8, size=(self.blobs, 2))
        colours = rng.uniform(0.0, 1.0, size=(self.blobs, 3))
        widths = rng.uniform(0.06, 0.16, size=self.blobs)
        return centres, colours, widths

    def _blob(self, centre, width):
        d2 = (self._yy - centre[0]) ** 2 + (self._xx - centre[1]) ** 2
        return np.exp(-d2 / (2.0 * width**2))

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(index)
        label = index // self.images_per_class
        centres, colours, widths = self._class_layout(label)
        rng = np.random.default_rng((self.seed, 1, index))
        shift = rng.normal(0.0, 0.05, size=2)
        image = np.zeros((self.size, self.size, 3), dtype=np.float32)
        for centre, colour, width in zip(centres, colours, widths):
            tint = np.clip(colour + rng.normal(0.0, 0.08, size=3), 0.0, 1.0)
            image += self._blob(centre + shift, width)[..., None] * tint
        image += self._blob(rng.uniform(0.1, 0.9, 2), rng.uniform(0.04, 0.1))[..., None] * rng.uniform(0, 1, 3)
        image = image * rng.uniform(0.7, 1.3) + rng.normal(0.0, self.noise, size=image.shape)
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@DATASETS.register("synthetic")
def synthetic(root: str | None = None, num_classes: int = 20, images_per_class: int = 20,
              image_size: int = 32, train_fraction: float = 0.5, seed: int = 0) -> dict[str, Split]:
    """``num_classes`` x ``images_per_class`` generated images; the first classes train, the rest test."""
    if num_classes < 2 or images_per_class < 1 or not 0.0 < train_fraction < 1.0:
        raise ValueError("synthetic: need num_classes >= 2, images_per_class >= 1, 0 < train_fraction < 1")
    images = SyntheticImages(num_classes, images_per_class, image_size, seed)
    labels = np.repeat(np.arange(num_classes), images_per_class)
    full = Split("synthetic", labels=labels, images=images)
    train, test = class_disjoint(labels, range(max(1, int(round(num_classes * train_fraction)))))
    return {"train": full.subset(train, "train"), "test": full.subset(test, "test")}
