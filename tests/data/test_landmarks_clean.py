"""Landmarks-clean as the listwise AP authors' code reads it: relpath relative to the root, any label string."""
import pytest
from fixtures import write_landmarks_clean, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits


@pytest.mark.parametrize("image_dir", ["", "images"], ids=["authors-root", "images-folder"])
def test_splits_labels_and_image_places(tmp_path, image_dir):
    truth = write_landmarks_clean(tmp_path, image_dir, val=True)
    splits = load_splits("landmarks_clean", str(tmp_path))
    assert sorted(splits) == ["train", "val"]
    for name, rows in truth.items():
        split = splits[name]
        assert split.paths == [path for path, _ in rows]
        assert [split.extra["class_names"][c] for c in split.labels.tolist()] == [label for _, label in rows]
        assert all((tmp_path / image_dir / p).is_file() for p in split.paths)
    train = splits["train"].labels.tolist()
    assert train[0] == train[1] and len(set(train)) == 3


def test_without_a_val_list_only_train(tmp_path):
    write_landmarks_clean(tmp_path)
    assert list(load_splits("landmarks_clean", str(tmp_path))) == ["train"]


def test_image_dir_forces_the_image_folder(tmp_path):
    write_landmarks_clean(tmp_path, "pictures")
    split = load_splits("landmarks_clean", str(tmp_path), image_dir="pictures")["train"]
    assert split.root == str(tmp_path / "pictures")


def test_errors_name_file_line_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"annotation_clean_train\.txt.*data_prep/landmarks_clean\.py"):
        load_splits("landmarks_clean", str(tmp_path))
    write_lines(tmp_path / "clean.txt", ["a/b.jpg 3", "a/c.jpg"])
    with pytest.raises(DatasetFormatError, match=r"clean\.txt:2: 1 fields instead of 2"):
        load_splits("landmarks_clean", str(tmp_path), list_file="clean.txt")


def test_the_released_address_list_is_explained(tmp_path):
    write_lines(tmp_path / "annotations" / "annotation_clean_train.txt",
                ["http://example.org/a.jpg 3"])
    with pytest.raises(DatasetFormatError, match=r"annotation_clean_train\.txt:1: 'http://example\.org/a\.jpg' "
                                                 r"is an image address, not a local path.*download the images"):
        load_splits("landmarks_clean", str(tmp_path))
