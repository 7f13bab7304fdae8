"""In-shop from list_eval_partition.txt: train, and query/gallery roles sharing item codes."""
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import write_inshop, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError
from retrieval.data.split import GALLERY, QUERY, load_splits

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("list_dir", "image_parent"), [("Eval", ""), ("Eval", "Img"), ("", "")],
                         ids=["eval-list", "release-folders", "flat"])
def test_roles_and_shared_item_codes(tmp_path, list_dir, image_parent):
    """The release's folders (README: Img/img.zip, Eval/list_eval_partition.txt) or everything in the root."""
    rows = write_inshop(tmp_path, list_dir, image_parent)
    splits = load_splits("inshop", str(tmp_path))
    train, test = splits["train"], splits["test"]
    for split in (train, test):
        assert split.root == str(tmp_path / image_parent)
        assert all((tmp_path / image_parent / p).is_file() for p in split.paths)
    assert train.paths == [image for image, _, status in rows if status == "train"]
    assert test.paths == [image for image, _, status in rows if status != "train"]
    assert test.roles.tolist() == [status for _, _, status in rows if status != "train"]
    assert (test.roles == QUERY).sum() == 2 and (test.roles == GALLERY).sum() == 3
    for split in (train, test):
        items = [item for image, item, _ in rows if image in split.paths]
        decoded = [split.extra["class_names"][label] for label in split.labels.tolist()]
        assert decoded == items  # the raw item id strings come back from the codes
        same = [[a == b for b in items] for a in items]
        assert [[a == b for b in split.labels] for a in split.labels] == same
    assert train.roles is None


def test_declared_count_must_match(tmp_path):
    rows = write_inshop(tmp_path)
    write_lines(tmp_path / "list_eval_partition.txt", ["9", "image_name item_id evaluation_status"]
                + [" ".join(row) for row in rows])
    with pytest.raises(DatasetFormatError, match=r"list_eval_partition\.txt: line 1 declares 9 images but 8"):
        load_splits("inshop", str(tmp_path))


def test_unknown_status_names_file_and_line(tmp_path):
    write_lines(tmp_path / "list_eval_partition.txt", ["2", "image_name item_id evaluation_status",
                                                       "img/a.jpg id_1 train", "img/b.jpg id_1 probe"])
    with pytest.raises(DatasetFormatError, match=r"list_eval_partition\.txt:4: evaluation_status 'probe'"):
        load_splits("inshop", str(tmp_path))


def test_preparation_prints_the_manual_steps(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "data_prep" / "inshop.py"), "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "InShopRetrieval.html" in result.stdout and "list_eval_partition.txt" in result.stdout
    assert str(tmp_path / "downloads") in result.stdout


def test_preparation_accepts_the_release_folders(tmp_path):
    write_inshop(tmp_path, "Eval", "Img")
    result = subprocess.run([sys.executable, str(REPO / "data_prep" / "inshop.py"), "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"verify inshop --root {tmp_path}" in result.stdout
