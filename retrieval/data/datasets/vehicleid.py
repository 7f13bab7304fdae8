"""PKU VehicleID (Liu et al. 2016) from ``train_test_split/*.txt`` and ``image/<image_id>.jpg``.

Each list has lines ``image_id vehicle_id``. Splits: ``train`` (train_list.txt) and the three
test lists ``test_800``, ``test_1600``, ``test_2400`` (test_list_<n>.txt, named by the number of
identities they hold). Labels are the vehicle ids.
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
LISTS = {"train": "train_list.txt", "test_800": "test_list_800.txt", "test_1600": "test_list_1600.txt",
         "test_2400": "test_list_2400.txt"}


def read_list(path: Path, name: str, root: Path) -> Split:
    paths, labels = [], []
    for lineno, (image_id, vehicle_id) in read_fields(path, LAYOUT):
        paths.append(f"image/{image_id}.jpg")
        labels.append(parse_number(vehicle_id, int, path, lineno, "vehicle_id", LAYOUT))
    return Split(name, labels=labels, paths=paths, root=str(root))


@DATASETS.register("vehicleid")
def vehicleid(root: str | None = None) -> dict[str, Split]:
    """``{"train", "test_800", "test_1600", "test_2400"}``; ``root`` is the VehicleID_V1.0 folder."""
    folder = require_root(root, "vehicleid")
    lists = folder / "train_test_split"
    missing = [name for name in LISTS.values() if not (lists / name).is_file()]
    if missing:
        raise DatasetNotFoundError(f"dataset 'vehicleid': {lists} lacks {', '.join(missing)}; "
                                   f"see `{prepare_command('vehicleid')}` for how to obtain VehicleID")
    return {name: read_list(lists / filename, name, folder) for name, filename in LISTS.items()}
