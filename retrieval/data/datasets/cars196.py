"""Stanford CARS196 (Krause et al. 2013), in either of its two official layouts.

- ``cars_annos.mat`` + ``car_ims/`` (the all-in-one release, ``car_ims.tgz``): one struct array
  ``annotations`` with ``relative_im_path`` (``car_ims/000001.jpg``), the box and ``class``, plus
  ``class_names``.
- The devkit layout (``cars_train.tgz``, ``cars_test.tgz``, ``car_devkit.tgz`` and
  ``cars_test_annos_withlabels.mat``; the devkit README): ``devkit/cars_train_annos.mat`` and
  ``cars_test_annos_withlabels.mat`` (in the root or in ``devkit/``) hold ``annotations`` with
  ``fname`` (a file of ``cars_train/`` or ``cars_test/``), the box and ``class``;
  ``devkit/cars_meta.mat`` holds ``class_names``. The two halves are joined.

The retrieval split (Song et al. 2016) is by class: 1-98 train, 99-196 test; the classification
split (the ``test`` flag, or the train/test halves of the devkit) is ignored. Labels are the
files' one-based class numbers. Boxes are ``bbox_x1, bbox_y1, bbox_x2, bbox_y2`` (min and max x and
y in pixels, per the devkit README) exactly as the files give them, which is how retrieval code
crops these images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from retrieval.data.datasets.parsing import (
    DatasetFormatError,
    DatasetNotFoundError,
    first_present,
    prepare_command,
    require_root,
)
from retrieval.data.split import DATASETS, Split

BOX_FIELDS = ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")
TRAIN_CLASSES, TEST_CLASSES = range(1, 99), range(99, 197)
ALL_IN_ONE = "cars_annos.mat"
DEVKIT_TRAIN, DEVKIT_META = "devkit/cars_train_annos.mat", "devkit/cars_meta.mat"
DEVKIT_TEST = ("cars_test_annos_withlabels.mat", "devkit/cars_test_annos_withlabels.mat")


def load_mat(path: Path, keys: tuple[str, ...]) -> dict:
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as error:  # scipy raises several types for a file that is not MATLAB v5
        raise DatasetFormatError(f"{path}: not a readable MATLAB file ({type(error).__name__}: {error})") from None
    for key in keys:
        if key not in mat:
            raise DatasetFormatError(f"{path}: no variable {key!r}; found {sorted(k for k in mat if k[0] != '_')}")
    return mat


def read_annotations(path: Path, path_field: str, folder: str = "") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(image paths, classes, boxes) of the struct array ``annotations``; ``folder/`` prefixes each path."""
    records = np.atleast_1d(load_mat(path, ("annotations",))["annotations"])
    fields = (path_field, *BOX_FIELDS, "class")
    missing = [f for f in fields if records.dtype.names is None or f not in records.dtype.names]
    if missing:
        raise DatasetFormatError(f"{path}: 'annotations' lacks the fields {missing}; it has {records.dtype.names}")
    paths = [f"{folder}/{p}" if folder else str(p) for p in records[path_field]]
    classes = np.array([int(c) for c in records["class"]], dtype=np.int64)
    boxes = np.array([[float(r[f]) for f in BOX_FIELDS] for r in records], dtype=np.float64).reshape(-1, 4)
    outside = np.flatnonzero((classes < TRAIN_CLASSES.start) | (classes >= TEST_CLASSES.stop))
    if len(outside):
        i = int(outside[0])
        raise DatasetFormatError(f"{path}: annotation {i + 1} ({paths[i]}) has class {classes[i]}, outside 1-196")
    return paths, classes, boxes


def class_names(path: Path) -> dict[int, str]:
    """One-based class number -> name, from the ``class_names`` of ``path``."""
    return {i + 1: str(name) for i, name in enumerate(np.atleast_1d(load_mat(path, ("class_names",))["class_names"]))}


def read_devkit(folder: Path) -> tuple[list[str], np.ndarray, np.ndarray, dict[int, str]]:
    """The train and test halves of the devkit layout, joined."""
    test_file = first_present(folder, DEVKIT_TEST)
    absent = [p for p in (DEVKIT_TRAIN, DEVKIT_META) if not (folder / p).is_file()]
    if test_file is None:
        absent.append(" or ".join(DEVKIT_TEST))
    if absent:
        raise DatasetNotFoundError(
            f"dataset 'cars196': {folder} holds neither {ALL_IN_ONE} (with car_ims/) nor the complete devkit "
            f"layout (missing: {', '.join(absent)}); prepare it with `{prepare_command('cars196')}`")
    train = read_annotations(folder / DEVKIT_TRAIN, "fname", "cars_train")
    test = read_annotations(test_file, "fname", "cars_test")
    return (train[0] + test[0], np.concatenate([train[1], test[1]]), np.concatenate([train[2], test[2]]),
            class_names(folder / DEVKIT_META))


@DATASETS.register("cars196")
def cars196(root: str | None = None) -> dict[str, Split]:
    """``{"train": classes 1-98, "test": classes 99-196}`` with boxes, from whichever layout ``root`` holds
    (``cars_annos.mat`` first)."""
    folder = require_root(root, "cars196")
    if (folder / ALL_IN_ONE).is_file():
        paths, classes, boxes = read_annotations(folder / ALL_IN_ONE, "relative_im_path")
        names = class_names(folder / ALL_IN_ONE)
    else:
        paths, classes, boxes, names = read_devkit(folder)
    full = Split("cars196", labels=classes, paths=paths, root=str(folder), boxes=boxes,
                 extra={"class_names": names})
    return {
        "train": full.subset(np.isin(classes, TRAIN_CLASSES), "train"),
        "test": full.subset(np.isin(classes, TEST_CLASSES), "test"),
    }
