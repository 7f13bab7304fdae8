"""Landmarks-clean from the authors' clean list (relpath label)."""
import pytest
from fixtures import write_landmarks_clean, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits


def test_train_split(tmp_path):
    rows = write_landmarks_clean(tmp_path)
    splits = load_splits("landmarks_clean", str(tmp_path))
    assert list(splits) == ["train"]
    assert splits["train"].paths == [path for path, _ in rows]
    assert splits["train"].labels.tolist() == [label for _, label in rows]
    assert all((tmp_path / "images" / p).is_file() for p in splits["train"].paths)


def test_errors_name_file_line_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"annotation_clean_train\.txt.*data_prep/landmarks_clean\.py"):
        load_splits("landmarks_clean", str(tmp_path))
    write_lines(tmp_path / "clean.txt", ["a/b.jpg 3", "a/c.jpg three"])
    with pytest.raises(DatasetFormatError, match=r"clean\.txt:2: label 'three' is not an integer"):
        load_splits("landmarks_clean", str(tmp_path), list_file="clean.txt")
