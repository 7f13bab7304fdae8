"""Stanford CARS196 (Krause et al. 2013) from ``cars_annos.mat`` and ``car_ims/``.

The retrieval split (Song et al. 2016) is by class: 1-98 train, 99-196 test; the ``test``
flag of the annotations (the classification split) is ignored. Labels are the file's class
numbers. Boxes are ``bbox_x1, bbox_y1, bbox_x2, bbox_y2`` exactly as the file gives them,
which is how retrieval code crops these images.
"""
from __future__ import annotations

import numpy as np

from retrieval.data.datasets.parsing import DatasetFormatError, find_file, require_root
from retrieval.data.split import DATASETS, Split

FIELDS = ("relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class")
TRAIN_CLASSES, TEST_CLASSES = range(1, 99), range(99, 197)


def read_annotations(path) -> tuple[list[str], np.ndarray, np.ndarray, dict[int, str]]:
    """(paths, classes, boxes, class names) from a ``cars_annos.mat``."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path, squeeze_me=True)
    except Exception as error:  # scipy raises several types for a file that is not MATLAB v5
        raise DatasetFormatError(f"{path}: not a readable MATLAB file ({type(error).__name__}: {error})") from None
    for key in ("annotations", "class_names"):
        if key not in mat:
            raise DatasetFormatError(f"{path}: no variable {key!r}; found {sorted(k for k in mat if k[0] != '_')}")
    records = np.atleast_1d(mat["annotations"])
    missing = [f for f in FIELDS if records.dtype.names is None or f not in records.dtype.names]
    if missing:
        raise DatasetFormatError(f"{path}: 'annotations' lacks the fields {missing}; it has {records.dtype.names}")
    paths = [str(p) for p in records["relative_im_path"]]
    classes = np.array([int(c) for c in records["class"]], dtype=np.int64)
    boxes = np.array([[float(r[f]) for f in FIELDS[1:5]] for r in records], dtype=np.float64).reshape(-1, 4)
    outside = np.flatnonzero((classes < TRAIN_CLASSES.start) | (classes >= TEST_CLASSES.stop))
    if len(outside):
        i = int(outside[0])
        raise DatasetFormatError(f"{path}: annotation {i + 1} ({paths[i]}) has class {classes[i]}, outside 1-196")
    names = {i + 1: str(name) for i, name in enumerate(np.atleast_1d(mat["class_names"]))}
    return paths, classes, boxes, names


@DATASETS.register("cars196")
def cars196(root: str | None = None) -> dict[str, Split]:
    """``{"train": classes 1-98, "test": classes 99-196}`` with boxes."""
    folder = require_root(root, "cars196")
    paths, classes, boxes, names = read_annotations(find_file(folder, ["cars_annos.mat"], "cars196"))
    full = Split("cars196", labels=classes, paths=paths, root=str(folder), boxes=boxes,
                 extra={"class_names": names})
    return {
        "train": full.subset(np.isin(classes, TRAIN_CLASSES), "train"),
        "test": full.subset(np.isin(classes, TEST_CLASSES), "test"),
    }
