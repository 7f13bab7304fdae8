"""VehicleID: train list and the three test lists, images at image/<id>.jpg."""
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import write_lines, write_vehicleid

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits

REPO = Path(__file__).resolve().parents[2]


def test_four_splits_with_vehicle_ids(tmp_path):
    truth = write_vehicleid(tmp_path)
    splits = load_splits("vehicleid", str(tmp_path))
    assert sorted(splits) == ["test_1600", "test_2400", "test_800", "train"]
    for name, rows in truth.items():
        assert splits[name].paths == [f"image/{image}.jpg" for image, _ in rows]
        assert splits[name].labels.tolist() == [vehicle for _, vehicle in rows]
        assert all((tmp_path / p).is_file() for p in splits[name].paths)


def test_a_missing_list_is_named(tmp_path):
    write_vehicleid(tmp_path)
    (tmp_path / "train_test_split" / "test_list_1600.txt").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"lacks test_list_1600\.txt.*data_prep/vehicleid\.py"):
        load_splits("vehicleid", str(tmp_path))


def test_a_malformed_line_names_file_and_line(tmp_path):
    write_vehicleid(tmp_path)
    write_lines(tmp_path / "train_test_split" / "train_list.txt", ["0000001 0001", "0000002"])
    with pytest.raises(DatasetFormatError, match=r"train_list\.txt:2: 1 fields instead of 2"):
        load_splits("vehicleid", str(tmp_path))


def test_preparation_extracts_a_given_archive_into_its_subfolder(tmp_path):
    """Gated: without files it prints the steps; with the archive it unpacks and names the real root."""
    import zipfile

    script = [sys.executable, str(REPO / "data_prep" / "vehicleid.py"), "--root", str(tmp_path / "root")]
    first = subprocess.run(script, capture_output=True, text=True, timeout=60)
    assert first.returncode == 2 and "pku-vehicleid" in first.stdout and "--archive" in first.stdout
    write_vehicleid(tmp_path / "release" / "VehicleID_V1.0")
    archive = tmp_path / "VehicleID_V1.0.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted((tmp_path / "release").rglob("*")):
            bundle.write(file, file.relative_to(tmp_path / "release").as_posix())
    second = subprocess.run(script + ["--archive", str(archive)], capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"--root {tmp_path / 'root' / 'VehicleID_V1.0'}" in second.stdout
    assert len(load_splits("vehicleid", str(tmp_path / "root" / "VehicleID_V1.0"))["test_2400"]) == 5


def test_ids_without_leading_zeros_name_seven_digit_files(tmp_path):
    """The Smooth-AP authors' loader reads the ids as integers and opens image/{id:07d}.jpg."""
    truth = write_vehicleid(tmp_path, padded_ids=False)
    assert (tmp_path / "train_test_split" / "train_list.txt").read_text().startswith("1 0001\n")
    split = load_splits("vehicleid", str(tmp_path))["train"]
    assert split.paths == [f"image/{image}.jpg" for image, _ in truth["train"]]
    assert all((tmp_path / p).is_file() for p in split.paths)


def test_the_parent_of_the_release_folder_is_accepted(tmp_path):
    truth = write_vehicleid(tmp_path / "VehicleID_V1.0")
    split = load_splits("vehicleid", str(tmp_path))["test_800"]
    assert split.root == str(tmp_path / "VehicleID_V1.0")
    assert split.paths == [f"image/{image}.jpg" for image, _ in truth["test_800"]]


def test_without_lists_both_searched_places_are_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"neither .*split nor .*VehicleID_V1\.0/train_test_split"):
        load_splits("vehicleid", str(tmp_path))
