"""iNaturalist 2018 with the class-disjoint split of Smooth-AP (Brown et al. 2020).

The split files ``Inaturalist_train_set1.txt`` and ``Inaturalist_test_set1.txt`` list one image
per line, relative to the folder holding ``train_val2018/``, e.g.
``train_val2018/Plantae/7477/3b60c9486db1d2ee875f11a669fbde4b.jpg``. The class of an image is
``supercategory/category_id`` (its two parent folders); labels are codes of these names in
sorted order and ``extra["class_names"]`` maps a code back to its name.
"""
from __future__ import annotations

from pathlib import Path

from retrieval.data.datasets.parsing import encode, find_file, format_error, read_lines, require_root
from retrieval.data.split import DATASETS, Split

LAYOUT = "train_val2018/<supercategory>/<category_id>/<image>.jpg"


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
    """``{"train", "test"}`` from the split files in ``root`` (another file name may be given)."""
    folder = require_root(root, "inaturalist")
    return {name: read_list(find_file(folder, [filename], "inaturalist"), name, folder)
            for name, filename in (("train", train_list), ("test", test_list))}
