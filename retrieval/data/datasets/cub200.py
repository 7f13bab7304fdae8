"""CUB-200-2011 (Wah et al. 2011) from the ``CUB_200_2011/`` folder as distributed.

``images.txt`` (image_id path), ``image_class_labels.txt`` (image_id class_id) and
``bounding_boxes.txt`` (image_id x y width height) are joined on image_id; every id must be in
all three. The retrieval split is by class: 1-100 train, 101-200 test. Labels are the class ids.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.data.datasets.parsing import (
    DatasetFormatError,
    find_folder_with,
    parse_number,
    read_fields,
    require_root,
    xywh_to_corners,
)
from retrieval.data.split import DATASETS, Split

IMAGES, LABELS, BOXES = "image_id path", "image_id class_id", "image_id x y width height"
TRAIN_CLASSES, TEST_CLASSES = range(1, 101), range(101, 201)


def read_table(path: Path, layout: str, value) -> dict[str, object]:
    """image_id -> value(fields after the id, line number); a repeated id is an error."""
    table: dict[str, object] = {}
    for lineno, fields in read_fields(path, layout):
        if fields[0] in table:
            raise DatasetFormatError(f"{path}:{lineno}: image_id {fields[0]} appears twice")
        table[fields[0]] = value(fields[1:], lineno)
    return table


def same_ids(reference: dict, reference_path: Path, other: dict, other_path: Path) -> None:
    for ids, present, absent in ((reference.keys() - other.keys(), reference_path, other_path),
                                 (other.keys() - reference.keys(), other_path, reference_path)):
        if ids:
            example = sorted(ids, key=lambda s: (len(s), s))[:5]
            raise DatasetFormatError(f"{len(ids)} image ids of {present} are missing from {absent}, e.g. {example}")


@DATASETS.register("cub200")
def cub200(root: str | None = None) -> dict[str, Split]:
    """``{"train": classes 1-100, "test": classes 101-200}`` with boxes; ``root`` may be CUB_200_2011 or its parent."""
    folder = find_folder_with(require_root(root, "cub200"), "images.txt", "CUB_200_2011", "cub200")
    images_txt, labels_txt, boxes_txt = (folder / n for n in ("images.txt", "image_class_labels.txt",
                                                              "bounding_boxes.txt"))
    for path in (labels_txt, boxes_txt):
        if not path.is_file():
            raise DatasetFormatError(f"{path} is missing; CUB_200_2011/ must hold images.txt, "
                                     "image_class_labels.txt and bounding_boxes.txt as in CUB_200_2011.tgz")
    paths = read_table(images_txt, IMAGES, lambda f, n: f[0])
    labels = read_table(labels_txt, LABELS, lambda f, n: parse_number(f[0], int, labels_txt, n, "class_id", LABELS))
    boxes = read_table(boxes_txt, BOXES,
                       lambda f, n: [parse_number(v, float, boxes_txt, n, "box value", BOXES) for v in f])
    same_ids(paths, images_txt, labels, labels_txt)
    same_ids(paths, images_txt, boxes, boxes_txt)
    ids = list(paths)
    classes = np.array([labels[i] for i in ids], dtype=np.int64)
    outside = [i for i, c in zip(ids, classes) if not 1 <= c <= 200]
    if outside:
        raise DatasetFormatError(f"{labels_txt}: image {outside[0]} has class {labels[outside[0]]}, outside 1-200")
    full = Split("cub200", labels=classes, paths=[paths[i] for i in ids], root=str(folder / "images"),
                 boxes=xywh_to_corners([boxes[i] for i in ids]))
    return {
        "train": full.subset(np.isin(classes, TRAIN_CLASSES), "train"),
        "test": full.subset(np.isin(classes, TEST_CLASSES), "test"),
    }
