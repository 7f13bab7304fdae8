"""CARS196 from a real cars_annos.mat: class-disjoint split, labels, boxes and crops."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import IMAGE_SIZE, crop_sizes, write_cars196, write_cars196_devkit, write_image

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits

REPO = Path(__file__).resolve().parents[2]


def test_split_by_class_ignoring_the_test_flag(tmp_path):
    records = write_cars196(tmp_path)
    splits = load_splits("cars196", str(tmp_path))
    assert sorted(splits) == ["test", "train"]
    for name, keep in (("train", lambda c: c <= 98), ("test", lambda c: c >= 99)):
        expected = [r for r in records if keep(r["label"])]
        split = splits[name]
        assert split.paths == [r["path"] for r in expected]
        assert split.labels.dtype == np.int64
        assert split.labels.tolist() == [r["label"] for r in expected]
        np.testing.assert_array_equal(split.boxes, [r["box"] for r in expected])
        assert split.roles is None
    assert splits["train"].extra["class_names"][196] == "Make Model 196"


def test_crops_are_the_annotated_boxes(tmp_path):
    write_cars196(tmp_path)
    split = load_splits("cars196", str(tmp_path))["test"]
    assert crop_sizes(split) == [(20, 15)] * len(split)
    split.boxes = None
    assert crop_sizes(split) == [IMAGE_SIZE] * len(split)


@pytest.mark.parametrize("test_labels_in_devkit", [False, True], ids=["root", "devkit"])
def test_devkit_layout_joins_both_halves(tmp_path, test_labels_in_devkit):
    """cars_train/ + cars_test/ with the devkit's annotations (fname, one-based class, x1 y1 x2 y2 in pixels)."""
    records = write_cars196_devkit(tmp_path, test_labels_in_devkit)
    splits = load_splits("cars196", str(tmp_path))
    for name, keep in (("train", lambda c: c <= 98), ("test", lambda c: c >= 99)):
        expected = [r for r in records if keep(r["label"])]
        split = splits[name]
        assert split.paths == [r["path"] for r in expected]
        assert split.labels.tolist() == [r["label"] for r in expected]
        np.testing.assert_array_equal(split.boxes, [r["box"] for r in expected])
        assert all((tmp_path / p).is_file() for p in split.paths)
    # the two halves number their files alike: a path names its half
    assert splits["train"].paths == ["cars_train/00001.jpg", "cars_test/00001.jpg", "cars_test/00002.jpg"]
    assert splits["test"].extra["class_names"][99] == "Devkit Model 99"
    assert crop_sizes(splits["test"]) == [(16, 12)] * 3


def test_an_incomplete_devkit_names_what_is_missing(tmp_path):
    write_cars196_devkit(tmp_path)
    (tmp_path / "cars_test_annos_withlabels.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing: cars_test_annos_withlabels\.mat or "
                                                   r"devkit/cars_test_annos_withlabels\.mat.*data_prep/cars196"):
        load_splits("cars196", str(tmp_path))


def test_missing_root_names_the_preparation_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python data_prep/cars196\.py --root DIR"):
        load_splits("cars196", str(tmp_path / "absent"))
    with pytest.raises(DatasetNotFoundError, match=r"cars_annos\.mat.*data_prep/cars196\.py"):
        load_splits("cars196", str(tmp_path))


def test_a_file_that_is_not_matlab_is_named(tmp_path):
    (tmp_path / "cars_annos.mat").write_text("not matlab")
    with pytest.raises(DatasetFormatError, match=r"cars_annos\.mat"):
        load_splits("cars196", str(tmp_path))


def test_a_class_outside_1_196_is_an_error(tmp_path):
    write_cars196(tmp_path, classes=(1, 197), per_class=1)
    with pytest.raises(DatasetFormatError, match=r"annotation 2 \(car_ims/000002\.jpg\) has class 197"):
        load_splits("cars196", str(tmp_path))


def test_preparation_script_installs_local_files_without_network(tmp_path):
    """The script takes car_ims.tgz and cars_annos.mat from the downloads folder, extracts, and is done."""
    import tarfile

    staging, downloads, root = tmp_path / "staging", tmp_path / "downloads", tmp_path / "root"
    write_cars196(staging)
    downloads.mkdir()
    with tarfile.open(downloads / "car_ims.tgz", "w:gz") as tar:
        tar.add(staging / "car_ims", arcname="car_ims")
    (downloads / "cars_annos.mat").write_bytes((staging / "cars_annos.mat").read_bytes())
    command = [sys.executable, str(REPO / "data_prep" / "cars196.py"), "--root", str(root),
               "--downloads", str(downloads), "--no-download"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"python -m retrieval data verify cars196 --root {root}" in result.stdout
    assert load_splits("cars196", str(root))["train"].labels.tolist() == [1, 1, 2, 2, 98, 98]
    write_image(root / "car_ims" / "000001.jpg", seed=99)  # a re-run finds it prepared and leaves it alone
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "extracting" not in again.stdout


def test_preparation_accepts_a_root_in_the_devkit_layout(tmp_path):
    write_cars196_devkit(tmp_path)
    command = [sys.executable, str(REPO / "data_prep" / "cars196.py"), "--root", str(tmp_path), "--no-download"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "downloading" not in result.stdout and f"verify cars196 --root {tmp_path}" in result.stdout
