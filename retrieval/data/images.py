"""Reading images from disk, with errors that name the file."""
from __future__ import annotations

import os

from PIL import Image, UnidentifiedImageError


class ImageLoadError(RuntimeError):
    """An image file that is missing, truncated or not an image."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"cannot read image {path}: {reason}")
        self.path = path


def load_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded (so truncation is caught here, not later)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(str(path), "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(str(path), f"{type(error).__name__}: {error}") from None
