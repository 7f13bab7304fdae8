"""Landmarks-clean (Gordo et al. 2017), the training set of Listwise AP (Revaud et al. 2019).

Layout of the listwise AP authors' code (naver/deep-image-retrieval, ``dirtorch/datasets/landmarks.py``
and ``generic.py``, class ``ImageListLabels``): the dataset root (their ``$DB_ROOT/landmarks/``) holds
``annotations/annotation_clean_train.txt`` and, when present, ``annotations/annotation_clean_val.txt``;
each line is ``relpath label`` (split on one space), ``relpath`` relative to the root itself, and the
label any string. Labels here are codes of the label strings in sorted order; ``extra["class_names"]``
maps a code back to the label as written.

Images are looked for at ``root/relpath`` as in the authors' code, or at ``root/images/relpath``
(the folder earlier versions of this project's preparation used), whichever holds the first listed
image; ``image_dir=`` forces one. The list released with Gordo et al.'s annotations gives image
addresses (``http://... label``, as third-party download scripts read it) rather than local paths: such
a line is an error telling how to turn it into the authors' form.
"""
from __future__ import annotations

from pathlib import Path

from retrieval.data.datasets.parsing import encode, find_file, format_error, read_fields, require_root
from retrieval.data.split import DATASETS, Split

LAYOUT = "relpath label"
IMAGE_DIRS = ("", "images")


def read_list(path: Path) -> tuple[list[str], list[str]]:
    paths, labels = [], []
    for lineno, (relpath, label) in read_fields(path, LAYOUT):
        if "://" in relpath:
            raise format_error(path, lineno, f"{relpath!r} is an image address, not a local path: this is the "
                               "list as released with the annotations; download the images and list each as its "
                               "path relative to the dataset root, with its label", LAYOUT)
        paths.append(relpath)
        labels.append(label)
    return paths, labels


def make_split(name: str, path: Path, image_root: Path) -> Split:
    paths, labels = read_list(path)
    codes, class_names = encode(labels)
    return Split(name, labels=codes, paths=paths, root=str(image_root), extra={"class_names": class_names})


def find_image_root(folder: Path, first_image: str | None) -> Path:
    """``folder`` or ``folder/images``, whichever holds ``first_image`` (``folder`` when neither does)."""
    if first_image is not None:
        for sub in IMAGE_DIRS:
            if (folder / sub / first_image).is_file():
                return folder / sub
    return folder


@DATASETS.register("landmarks_clean")
def landmarks_clean(root: str | None = None, list_file: str = "annotations/annotation_clean_train.txt",
                    val_list: str = "annotations/annotation_clean_val.txt",
                    image_dir: str | None = None) -> dict[str, Split]:
    """``{"train"}``, plus ``"val"`` when ``val_list`` exists; ``image_dir`` (relative to the root, or absolute)
    overrides where the images are looked for."""
    folder = require_root(root, "landmarks_clean")
    path = find_file(folder, [list_file], "landmarks_clean")
    if image_dir is not None:
        image_root = folder / image_dir
    else:
        first = next((fields[0] for _, fields in read_fields(path, LAYOUT)), None)
        image_root = find_image_root(folder, first)
    splits = {"train": make_split("train", path, image_root)}
    if (folder / val_list).is_file():
        splits["val"] = make_split("val", folder / val_list, image_root)
    return splits
