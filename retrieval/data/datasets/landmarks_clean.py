"""Landmarks-clean (Gordo et al. 2017), the training set of Listwise AP (Revaud et al. 2019).

The authors' clean list has one image per line, ``relpath label``, ``relpath`` relative to the
image folder and ``label`` the landmark number. Where the authors' code keeps them:
``annotations/annotation_clean_train.txt`` and ``images/`` under the dataset root; other
places can be given as ``list_file=`` and ``image_dir=`` (relative to the root, or absolute).
"""
from __future__ import annotations

from retrieval.data.datasets.parsing import find_file, parse_number, read_fields, require_root
from retrieval.data.split import DATASETS, Split

LAYOUT = "relpath label"


@DATASETS.register("landmarks_clean")
def landmarks_clean(root: str | None = None, list_file: str = "annotations/annotation_clean_train.txt",
                    image_dir: str = "images") -> dict[str, Split]:
    """``{"train"}`` with the landmark numbers as labels."""
    folder = require_root(root, "landmarks_clean")
    path = find_file(folder, [list_file], "landmarks_clean")
    paths, labels = [], []
    for lineno, (relpath, label) in read_fields(path, LAYOUT):
        paths.append(relpath)
        labels.append(parse_number(label, int, path, lineno, "label", LAYOUT))
    return {"train": Split("train", labels=labels, paths=paths, root=str(folder / image_dir))}
