"""VGGFace2 (Cao et al. 2018): identity folders ``train/n000002/0001_01.jpg`` and ``test/...``.

The images of a split are those of its official image list (lines ``n000002/0001_01.jpg``) when one
is present: ``meta/<split>.txt`` (the release README: "The 'meta' folder includes ... train.txt,
test.txt") or ``<split>_list.txt`` (the lists as downloaded separately), in the root or in ``meta/``;
else every ``.jpg`` of the split's identity folders. When
``bb_landmark/loose_bb_<split>.csv`` (or ``loose_bb_<split>.csv`` in the root) is present (header
``NAME_ID,X,Y,W,H``, NAME_ID like ``n000002/0001_01``), its loose face boxes become the split's
boxes, and every image must have one.
Labels are codes of the identity names in sorted order; ``extra["class_names"]`` maps them back.
"""
from __future__ import annotations

import csv
from pathlib import Path

from retrieval.data.datasets.parsing import (
    DatasetFormatError,
    DatasetNotFoundError,
    encode,
    first_present,
    format_error,
    parse_number,
    prepare_command,
    read_lines,
    require_root,
    xywh_to_corners,
)
from retrieval.data.split import DATASETS, Split

LIST_LAYOUT, BOX_COLUMNS = "<identity>/<image>.jpg", ["NAME_ID", "X", "Y", "W", "H"]
LIST_PLACES = ("meta/{split}.txt", "{split}_list.txt", "meta/{split}_list.txt")


def listed_images(path: Path) -> list[str]:
    names = []
    for lineno, line in read_lines(path):
        if len(line.split()) != 1 or len(line.split("/")) != 2 or not line.endswith(".jpg"):
            raise format_error(path, lineno, f"{line!r} is not one identity/image path", LIST_LAYOUT)
        names.append(line)
    return names


def folder_images(folder: Path) -> list[str]:
    """``identity/file`` of every image under ``folder``; anything else there is an error, not skipped."""
    names = []
    for identity in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        if not identity.is_dir():
            raise DatasetFormatError(f"{identity}: expected only identity folders in {folder}")
        for image in sorted(p for p in identity.iterdir() if not p.name.startswith(".")):
            if image.suffix.lower() != ".jpg":
                raise DatasetFormatError(f"{image}: not a .jpg image; an identity folder holds only its images")
            names.append(f"{identity.name}/{image.name}")
    return names


def read_boxes(path: Path) -> dict[str, list[float]]:
    """NAME_ID -> (x, y, w, h) from a ``loose_bb_*.csv``."""
    layout = ",".join(BOX_COLUMNS)
    boxes = {}
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header != BOX_COLUMNS:
            raise DatasetFormatError(f"{path}:1: header {header}, expected {layout}")
        for lineno, row in enumerate(rows, 2):
            if len(row) != 5:
                raise format_error(path, lineno, f"{len(row)} columns instead of 5", layout)
            boxes[row[0]] = [parse_number(v, float, path, lineno, "box value", layout) for v in row[1:]]
    return boxes


def read_split(root: Path, name: str) -> Split:
    folder = root / name
    list_file = first_present(root, [place.format(split=name) for place in LIST_PLACES])
    if not folder.is_dir():
        raise DatasetNotFoundError(f"dataset 'vggface2': no folder {folder}; see `{prepare_command('vggface2')}` "
                                   "(or ask only for the splits you have, e.g. splits=['test'])")
    images = listed_images(list_file) if list_file is not None else folder_images(folder)
    labels, class_names = encode([image.split("/")[0] for image in images])
    box_file = next((f for f in (root / "bb_landmark" / f"loose_bb_{name}.csv", root / f"loose_bb_{name}.csv")
                     if f.is_file()), None)
    boxes = None
    if box_file is not None:
        table = read_boxes(box_file)
        missing = [image for image in images if image[: -len(".jpg")] not in table]
        if missing:
            raise DatasetFormatError(f"{box_file} has no box for {len(missing)} images of {name}, "
                                     f"e.g. {missing[:5]}; is it the file of this release?")
        boxes = xywh_to_corners([table[image[: -len(".jpg")]] for image in images])
    return Split(name, labels=labels, paths=[f"{name}/{image}" for image in images], root=str(root), boxes=boxes,
                 extra={"class_names": class_names})


@DATASETS.register("vggface2")
def vggface2(root: str | None = None, splits: tuple[str, ...] = ("train", "test")) -> dict[str, Split]:
    """The requested splits among ``"train"`` (8,631 identities) and ``"test"`` (500 identities)."""
    unknown = set(splits) - {"train", "test"}
    if unknown:
        raise ValueError(f"vggface2: unknown splits {sorted(unknown)}; choose among 'train' and 'test'")
    folder = require_root(root, "vggface2")
    return {name: read_split(folder, name) for name in splits}
