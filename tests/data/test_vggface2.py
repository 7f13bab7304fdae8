"""VGGFace2: identity folders or official lists, loose face boxes."""
import numpy as np
import pytest
from fixtures import crop_sizes, write_image, write_lines, write_vggface2

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits


@pytest.mark.parametrize("lists", ["{split}_list.txt", "meta/{split}.txt", "meta/{split}_list.txt", None],
                         ids=["lists-in-root", "release-meta", "lists-in-meta", "folder-walk"])
def test_identities_and_boxes(tmp_path, lists):
    truth = write_vggface2(tmp_path, lists=lists)
    if lists:  # an image left out of the list is left out of the split: the list, not the folder, decides
        write_image(tmp_path / "test" / "n000001" / "0099_01.jpg")
    splits = load_splits("vggface2", str(tmp_path))
    for name, rows in truth.items():
        split = splits[name]
        images = [image for image, _ in rows]
        assert split.paths == [f"{name}/{image}" for image in images]
        identities = [split.extra["class_names"][c] for c in split.labels.tolist()]
        assert identities == [image.split("/")[0] for image in images]
        np.testing.assert_array_equal(split.boxes, [(x, y, x + w, y + h) for _, (x, y, w, h) in rows])
        assert crop_sizes(split) == [(w, h) for _, (_, _, w, h) in rows]


def test_without_box_files_there_are_no_boxes(tmp_path):
    write_vggface2(tmp_path, boxes=False)
    assert load_splits("vggface2", str(tmp_path))["test"].boxes is None


def test_only_the_requested_splits(tmp_path):
    write_vggface2(tmp_path)
    (tmp_path / "train_list.txt").unlink()
    for image in (tmp_path / "train").rglob("*.jpg"):
        image.unlink()
    assert list(load_splits("vggface2", str(tmp_path), splits=("test",))) == ["test"]
    import shutil

    shutil.rmtree(tmp_path / "train")
    with pytest.raises(DatasetNotFoundError, match=r"no folder .*train.*splits=\['test'\]"):
        load_splits("vggface2", str(tmp_path))


def test_an_image_without_a_box_is_named(tmp_path):
    write_vggface2(tmp_path)
    write_lines(tmp_path / "bb_landmark" / "loose_bb_test.csv", ["NAME_ID,X,Y,W,H", '"n000001/0001_01",1,2,3,4'])
    with pytest.raises(DatasetFormatError, match=r"no box for 2 images of test.*n000001/0005_02\.jpg"):
        load_splits("vggface2", str(tmp_path))


def test_a_stray_file_in_an_identity_folder_is_an_error_not_skipped(tmp_path):
    write_vggface2(tmp_path, lists=None)
    write_image(tmp_path / "test" / "n000001" / "0009_01.png")
    with pytest.raises(DatasetFormatError, match=r"0009_01\.png: not a \.jpg image"):
        load_splits("vggface2", str(tmp_path), splits=("test",))
