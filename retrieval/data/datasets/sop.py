"""Stanford Online Products (Song et al. 2016) from ``Ebay_train.txt`` and ``Ebay_test.txt``.

Each file has the header ``image_id class_id super_class_id path`` and one image per line,
``path`` relative to the ``Stanford_Online_Products/`` folder. Labels are the class ids
(train 1-11318, test 11319-22634 in the official files: disjoint classes).
"""
from __future__ import annotations

from pathlib import Path

from retrieval.data.datasets.parsing import check_header, find_folder_with, parse_number, read_fields, require_root
from retrieval.data.split import DATASETS, Split

LAYOUT = "image_id class_id super_class_id path"


def read_list(path: Path, name: str) -> Split:
    check_header(path, 1, LAYOUT)
    paths, labels = [], []
    for lineno, fields in read_fields(path, LAYOUT, skip=1):
        labels.append(parse_number(fields[1], int, path, lineno, "class_id", LAYOUT))
        paths.append(fields[3])
    return Split(name, labels=labels, paths=paths, root=str(path.parent))


@DATASETS.register("sop")
def sop(root: str | None = None) -> dict[str, Split]:
    """``{"train", "test"}``; ``root`` may be Stanford_Online_Products or its parent."""
    folder = find_folder_with(require_root(root, "sop"), "Ebay_train.txt", "Stanford_Online_Products", "sop")
    return {name: read_list(folder / f"Ebay_{name}.txt", name) for name in ("train", "test")}
