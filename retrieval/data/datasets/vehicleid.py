"""PKU VehicleID (Liu et al. 2016) from ``train_test_split/*.txt`` and ``image/<image_id>.jpg``.

Each list has lines ``image_id vehicle_id`` (whitespace-separated, no header). Splits: ``train``
(train_list.txt) and the three test lists ``test_800``, ``test_1600``, ``test_2400``
(test_list_<n>.txt, named by the number of identities they hold). Labels are the vehicle ids.

Image files are named by the image id written with seven digits: the Smooth-AP authors' loader
(Andrew-Brown1/Smooth_AP, ``src/datasets.py``) reads the lists as integers and opens
``image/{id:07d}.jpg``, so an id listed without its leading zeros (``4763``) is the file
``image/0004763.jpg``; a non-numeric id is used as written.
"""
from __future__ import annotations

from pathlib import Path

from retrieval.data.datasets.parsing import (
    DatasetNotFoundError,
    parse_number,
    prepare_command,
    read_fields,
    require_root,
)
from retrieval.data.split import DATASETS, Split

LAYOUT = "image_id vehicle_id"
ID_DIGITS = 7  # image/0004763.jpg
RELEASE_FOLDER = "VehicleID_V1.0"  # the folder the release archive unpacks to
LISTS = {"train": "train_list.txt", "test_800": "test_list_800.txt", "test_1600": "test_list_1600.txt",
         "test_2400": "test_list_2400.txt"}


def read_list(path: Path, name: str, root: Path) -> Split:
    paths, labels = [], []
    for lineno, (image_id, vehicle_id) in read_fields(path, LAYOUT):
        paths.append(f"image/{image_file_stem(image_id)}.jpg")
        labels.append(parse_number(vehicle_id, int, path, lineno, "vehicle_id", LAYOUT))
    return Split(name, labels=labels, paths=paths, root=str(root))


def image_file_stem(image_id: str) -> str:
    """The image's file name without ``.jpg``: a numeric id zero-padded to seven digits."""
    return image_id.zfill(ID_DIGITS) if image_id.isdigit() else image_id


@DATASETS.register("vehicleid")
def vehicleid(root: str | None = None) -> dict[str, Split]:
    """``{"train", "test_800", "test_1600", "test_2400"}``; ``root`` is the folder holding ``train_test_split/``
    and ``image/`` (the release's ``VehicleID_V1.0``) or its parent."""
    folder = require_root(root, "vehicleid")
    nested = folder / RELEASE_FOLDER
    if not (folder / "train_test_split").is_dir() and (nested / "train_test_split").is_dir():
        folder = nested
    lists = folder / "train_test_split"
    if not lists.is_dir():
        raise DatasetNotFoundError(f"dataset 'vehicleid': found neither {lists} nor {nested / 'train_test_split'}; "
                                   f"see `{prepare_command('vehicleid')}` for how to obtain VehicleID")
    missing = [name for name in LISTS.values() if not (lists / name).is_file()]
    if missing:
        raise DatasetNotFoundError(f"dataset 'vehicleid': {lists} lacks {', '.join(missing)}; "
                                   f"see `{prepare_command('vehicleid')}` for how to obtain VehicleID")
    return {name: read_list(lists / filename, name, folder) for name, filename in LISTS.items()}
