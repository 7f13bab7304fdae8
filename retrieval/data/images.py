"""Reading images from disk, with errors that name the file."""
from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError


class ImageLoadError(RuntimeError):
    """An image file that is missing, truncated or not an image."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path


class UnreadableImagesError(ImageLoadError):
    """Every unreadable image of a split that must not drop any (evaluation), each named with its reason."""

    def __init__(self, split_name: str, failures: list[tuple[str, str]]):
        RuntimeError.__init__(self, f"{len(failures)} images of split {split_name!r} could not be read, and "
                                    f"evaluation must not drop items: {'; '.join(r for _, r in failures)}. "
                                    "Repair or remove them from the split.")
        self.path, self.paths = failures[0][0], [p for p, _ in failures]


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded (so truncation is caught here, not later).

    An image with more pixels than PIL's decompression-bomb limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``)
    is unreadable like a truncated one: PIL refuses it before decoding, and the reason states the limit.
    """
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(str(path), "file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(str(path), f"{type(error).__name__}: {error}") from None
