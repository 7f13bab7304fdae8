"""CUB-200-2011 from its three text files: join on image id, class-disjoint split, boxes and crops."""
import numpy as np
import pytest
from fixtures import crop_sizes, write_cub200, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits


@pytest.mark.parametrize("inner", [False, True], ids=["parent-root", "CUB_200_2011-root"])
def test_split_labels_and_boxes(tmp_path, inner):
    records = write_cub200(tmp_path)
    splits = load_splits("cub200", str(tmp_path / "CUB_200_2011" if inner else tmp_path))
    for name, keep in (("train", lambda c: c <= 100), ("test", lambda c: c > 100)):
        expected = [r for r in records if keep(r["label"])]
        split = splits[name]
        assert split.root == str(tmp_path / "CUB_200_2011" / "images")
        assert split.paths == [r["path"] for r in expected]
        assert split.labels.tolist() == [r["label"] for r in expected]
        x, y, w, h = np.array([r["xywh"] for r in expected]).T
        np.testing.assert_array_equal(split.boxes, np.stack([x, y, x + w, y + h], axis=1))


def test_crops_have_the_box_size(tmp_path):
    write_cub200(tmp_path)
    assert crop_sizes(load_splits("cub200", str(tmp_path))["train"]) == [(12, 9)] * 6


def test_an_id_missing_from_one_file_is_named(tmp_path):
    records = write_cub200(tmp_path)
    write_lines(tmp_path / "CUB_200_2011" / "image_class_labels.txt", [f"{r['id']} {r['label']}" for r in records[:-1]])
    with pytest.raises(DatasetFormatError, match=r"1 image ids of .*images\.txt are missing from .*image_class_labels"):
        load_splits("cub200", str(tmp_path))


@pytest.mark.parametrize("line, problem", [("3 12.0 4.0 9.0", "4 fields instead of 5"),
                                           ("3 12.0 4.0 nine 9.0", "box value 'nine' is not a number")])
def test_a_malformed_line_names_file_and_line(tmp_path, line, problem):
    records = write_cub200(tmp_path)
    lines = [f"{r['id']} 1.0 2.0 12.0 9.0" for r in records]
    lines[2] = line
    write_lines(tmp_path / "CUB_200_2011" / "bounding_boxes.txt", lines)
    with pytest.raises(DatasetFormatError, match=rf"bounding_boxes\.txt:3: {problem}"):
        load_splits("cub200", str(tmp_path))


def test_missing_files_name_the_preparation_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"images\.txt.*python data_prep/cub200\.py --root DIR"):
        load_splits("cub200", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"python data_prep/cub200\.py --root DIR"):
        load_splits("cub200", None)


def test_preparation_refuses_an_archive_that_is_not_the_published_one(tmp_path):
    """The script knows CUB_200_2011.tgz's published md5: a different file is reported, not extracted."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "data_prep" / "cub200.py"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    (downloads / "CUB_200_2011.tgz").write_bytes(b"not the release")
    result = subprocess.run([sys.executable, str(script), "--root", str(tmp_path), "--no-download"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "expected 97eceeb196236b17998738112f37df78" in result.stderr and "delete it" in result.stderr
    assert not (tmp_path / "CUB_200_2011").exists()
