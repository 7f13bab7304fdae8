"""Image transforms in the papers' style, built from a config section."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from torchvision import transforms as T

from retrieval.config.constraints import Range

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIXELS, SPREAD = Annotated[int, Range(ge=1)], Annotated[float, Range(gt=0)]


@dataclass
class TransformConfig:
    """``resize``: the shorter side (an int, aspect kept) or an exact ``[height, width]``;
    ``crop``: square crop size (random when ``random_crop``, else centre);
    ``random_resized_crop``: Inception-style crop of that size;
    ``max_size``: cap on the longer side, aspect kept (the revisited benchmarks' 1024);
    ``flip``: random horizontal flip."""

    resize: PIXELS | tuple[PIXELS, PIXELS] | None = None
    crop: PIXELS | None = None
    random_crop: bool = False
    random_resized_crop: PIXELS | None = None
    max_size: PIXELS | None = None
    flip: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[SPREAD, SPREAD, SPREAD] = IMAGENET_STD


class LongerSideAtMost:
    """Shrink (never enlarge) so the longer side is at most ``size``, keeping the aspect ratio."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, image):
        image = image.copy()
        image.thumbnail((self.size, self.size))
        return image

    def __repr__(self) -> str:
        return f"LongerSideAtMost({self.size})"


def build_transform(cfg: TransformConfig) -> T.Compose:
    """PIL image -> normalised (3, H, W) float tensor, the steps of ``cfg`` in the order its fields list them."""
    steps = []
    if cfg.max_size is not None:
        steps.append(LongerSideAtMost(cfg.max_size))
    if cfg.random_resized_crop is not None:
        steps.append(T.RandomResizedCrop(cfg.random_resized_crop))
    if cfg.resize is not None:
        steps.append(T.Resize(cfg.resize if isinstance(cfg.resize, int) else list(cfg.resize)))
    if cfg.crop is not None:
        steps.append(T.RandomCrop(cfg.crop) if cfg.random_crop else T.CenterCrop(cfg.crop))
    if cfg.flip:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(cfg.mean, cfg.std)]
    return T.Compose(steps)
