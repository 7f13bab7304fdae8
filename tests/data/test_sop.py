"""Stanford Online Products from Ebay_train.txt / Ebay_test.txt."""
import pytest
from fixtures import write_lines, write_sop

from retrieval.data.datasets.parsing import DatasetFormatError
from retrieval.data.split import load_splits


@pytest.mark.parametrize("inner", [False, True], ids=["parent", "Stanford_Online_Products"])
def test_splits_paths_and_class_labels(tmp_path, inner):
    """The zip unpacks to Stanford_Online_Products/; either that folder or its parent is the root."""
    truth = write_sop(tmp_path)
    splits = load_splits("sop", str(tmp_path / "Stanford_Online_Products" if inner else tmp_path))
    for name, rows in truth.items():
        assert splits[name].paths == [path for path, _ in rows]
        assert splits[name].labels.tolist() == [label for _, label in rows]
        assert splits[name].root == str(tmp_path / "Stanford_Online_Products")
        assert splits[name].boxes is None and splits[name].roles is None
        assert all((tmp_path / "Stanford_Online_Products" / p).is_file() for p in splits[name].paths)
    assert set(splits["train"].labels).isdisjoint(splits["test"].labels)


def test_header_is_checked(tmp_path):
    write_sop(tmp_path)
    write_lines(tmp_path / "Stanford_Online_Products" / "Ebay_test.txt", ["1 11319 9 sofa_final/a.JPG"])
    with pytest.raises(DatasetFormatError, match=r"Ebay_test\.txt:1: header .*expected 'image_id class_id"):
        load_splits("sop", str(tmp_path / "Stanford_Online_Products"))


def test_a_bad_class_id_names_file_and_line(tmp_path):
    write_sop(tmp_path)
    write_lines(tmp_path / "Stanford_Online_Products" / "Ebay_train.txt",
                ["image_id class_id super_class_id path", "1 1 1 bicycle_final/a.JPG", "2 x 1 bicycle_final/b.JPG"])
    with pytest.raises(DatasetFormatError, match=r"Ebay_train\.txt:3: class_id 'x' is not an integer"):
        load_splits("sop", str(tmp_path))
