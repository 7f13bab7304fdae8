"""iNaturalist 2018 with the Smooth-AP split files: class = supercategory/category_id."""
import pytest
from fixtures import write_inaturalist, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits


def test_classes_are_supercategory_and_category(tmp_path):
    truth = write_inaturalist(tmp_path)
    splits = load_splits("inaturalist", str(tmp_path))
    assert splits["train"].paths == truth["train"]
    names = {name: [splits[name].extra["class_names"][c] for c in splits[name].labels.tolist()] for name in truth}
    assert names["train"] == ["Plantae/7477", "Plantae/7477", "Aves/3001"]
    # the same category id under two supercategories is two classes
    assert names["test"] == ["Insecta/1200", "Plantae/1200", "Insecta/1200"]
    assert splits["test"].labels[0] == splits["test"].labels[2] != splits["test"].labels[1]


def test_other_split_file_names(tmp_path):
    truth = write_inaturalist(tmp_path)
    (tmp_path / "Inaturalist_test_set1.txt").rename(tmp_path / "my_test.txt")
    assert load_splits("inaturalist", str(tmp_path), test_list="my_test.txt")["test"].paths == truth["test"]
    with pytest.raises(DatasetNotFoundError, match=r"Inaturalist_test_set1\.txt.*data_prep/inaturalist\.py"):
        load_splits("inaturalist", str(tmp_path))


def test_a_line_that_is_not_a_path_names_file_and_line(tmp_path):
    write_inaturalist(tmp_path)
    write_lines(tmp_path / "Inaturalist_train_set1.txt", ["train_val2018/Aves/1/a.jpg", "Aves a.jpg 3"])
    with pytest.raises(DatasetFormatError, match=r"Inaturalist_train_set1\.txt:2: 'Aves a\.jpg 3' is not one"):
        load_splits("inaturalist", str(tmp_path))
