"""DeepFashion In-shop Clothes Retrieval (Liu et al. 2016) from ``list_eval_partition.txt``.

The file's first line is the image count, the second the header
``image_name item_id evaluation_status``, then one image per line with status ``train``,
``query`` or ``gallery``; image names (``img/WOMEN/...jpg``) are relative to the folder holding
``img/``. Item ids are strings: labels are their codes in sorted order, shared by query and
gallery, and ``extra["class_names"]`` maps a code back to its item id.

Layouts (the benchmark's README, "File Information": ``Img/img.zip``, ``Eval/list_eval_partition.txt``):
the list is read from the root or from ``Eval/``; the images from ``img/`` in the root or in ``Img/``
(``img.zip`` unpacked where the release puts it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.data.datasets.parsing import (
    DatasetFormatError,
    check_header,
    encode,
    find_file,
    first_present,
    format_error,
    read_fields,
    read_lines,
    require_root,
)
from retrieval.data.split import DATASETS, GALLERY, QUERY, Split

LAYOUT = "image_name item_id evaluation_status"
STATUSES = ("train", QUERY, GALLERY)
LIST_PLACES = ("list_eval_partition.txt", "Eval/list_eval_partition.txt")
IMAGE_FOLDERS = ("img", "Img/img")  # img/ directly in the root, or img.zip unpacked inside the release's Img/


def declared_count(path: Path) -> int:
    for lineno, line in read_lines(path):
        if lineno != 1 or not line.isdigit():
            raise DatasetFormatError(f"{path}:1: expected the number of images, got {line!r}")
        return int(line)
    raise DatasetFormatError(f"{path} is empty")


def make_split(name: str, rows: list[tuple[str, str, str]], root: Path) -> Split:
    labels, class_names = encode([item for _, item, _ in rows])
    roles = None if name == "train" else np.array([status for _, _, status in rows])
    return Split(name, labels=labels, paths=[image for image, _, _ in rows], root=str(root), roles=roles,
                 extra={"class_names": class_names})


@DATASETS.register("inshop")
def inshop(root: str | None = None) -> dict[str, Split]:
    """``{"train", "test"}``; test holds the query and gallery images in file order, ``roles`` telling which."""
    folder = require_root(root, "inshop")
    path = find_file(folder, list(LIST_PLACES), "inshop")
    check_header(path, 2, LAYOUT)
    rows = []
    for lineno, (image, item, status) in read_fields(path, LAYOUT, skip=2):
        if status not in STATUSES:
            raise format_error(path, lineno, f"evaluation_status {status!r} is not one of {STATUSES}", LAYOUT)
        rows.append((image, item, status))
    if len(rows) != declared_count(path):
        raise DatasetFormatError(f"{path}: line 1 declares {declared_count(path)} images but {len(rows)} are listed")
    found = first_present(folder, IMAGE_FOLDERS, folder=True)
    images = folder if found is None else found.parent  # neither: the verification names the missing images
    return {
        "train": make_split("train", [r for r in rows if r[2] == "train"], images),
        "test": make_split("test", [r for r in rows if r[2] != "train"], images),
    }

