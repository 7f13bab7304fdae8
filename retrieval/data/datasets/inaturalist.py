"""iNaturalist 2018 with the class-disjoint split of Smooth-AP (Brown et al. 2020).

The split files ``Inaturalist_train_set1.txt`` and ``Inaturalist_test_set1.txt`` list one image
per line, relative to the dataset root (the folder holding ``train_val2018/``), e.g.
``train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4b.jpg``. The class of an image is
``supercategory/category_id`` (its two parent folders); labels are codes of these names in
sorted order and ``extra["class_names"]`` maps a code back to its name.

Where the split files are looked for (Andrew-Brown1/Smooth_AP, ``src/datasets.py``): the authors'
README has the zip of split files unpacked into the dataset root, and their loader reads them from
``<root>/Inat_dataset_splits/`` (since commit 384e7f9, "new_dataset_path"; before it, from the root
itself). Both places are searched, the subfolder first.
"""
from __future__ import annotations

from pathlib import Path

from retrieval.data.datasets.parsing import encode, find_file, format_error, read_lines, require_root
from retrieval.data.split import DATASETS, Split

LAYOUT = "train_val2018/<supercategory>/<category_id>/<image>.jpg"
SPLIT_FOLDERS = ("Inat_dataset_splits", "")


def read_list(path: Path, name: str, root: Path) -> Split:
    paths, classes = [], []
    for lineno, line in read_lines(path):
        parts = line.split("/")
        if len(line.split()) != 1 or len(parts) < 3 or not all(parts):
            raise format_error(path, lineno, f"{line!r} is not one relative image path", LAYOUT)
        paths.append(line)
        classes.append(f"{parts[-3]}/{parts[-2]}")
    labels, class_names = encode(classes)
    return Split(name, labels=labels, paths=paths, root=str(root), extra={"class_names": class_names})


@DATASETS.register("inaturalist")
def inaturalist(root: str | None = None, train_list: str = "Inaturalist_train_set1.txt",
                test_list: str = "Inaturalist_test_set1.txt") -> dict[str, Split]:
    """``{"train", "test"}`` from the split files in ``root/Inat_dataset_splits/`` or ``root`` (another file
    name, relative to the root, may be given)."""
    folder = require_root(root, "inaturalist")
    return {name: read_list(find_file(folder, split_file_candidates(filename), "inaturalist"), name, folder)
            for name, filename in (("train", train_list), ("test", test_list))}


def split_file_candidates(filename: str) -> list[str]:
    """``filename`` under each folder where the authors' loader has read the split files."""
    return [f"{sub}/{filename}" if sub else filename for sub in SPLIT_FOLDERS]
