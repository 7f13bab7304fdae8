"""iNaturalist 2018 with the Smooth-AP split files: class = supercategory/category_id; the split files in
Inat_dataset_splits/ (the authors' loader since commit 384e7f9) or in the root (before it)."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fixtures import write_inaturalist, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError, DatasetNotFoundError
from retrieval.data.split import load_splits

REPO = Path(__file__).resolve().parents[2]
SPLIT_FOLDER = "Inat_dataset_splits"


@pytest.mark.parametrize("split_folder", [SPLIT_FOLDER, ""], ids=["authors-subfolder", "root"])
def test_classes_are_supercategory_and_category(tmp_path, split_folder):
    truth = write_inaturalist(tmp_path, split_folder)
    splits = load_splits("inaturalist", str(tmp_path))
    assert splits["train"].paths == truth["train"]
    assert all((tmp_path / p).is_file() for name in truth for p in splits[name].paths)
    names = {name: [splits[name].extra["class_names"][c] for c in splits[name].labels.tolist()] for name in truth}
    assert names["train"] == ["Plantae/7477", "Plantae/7477", "Aves/3001"]
    # the same category id under two supercategories is two classes
    assert names["test"] == ["Insecta/1200", "Plantae/1200", "Insecta/1200"]
    assert splits["test"].labels[0] == splits["test"].labels[2] != splits["test"].labels[1]


def test_the_authors_subfolder_wins_over_a_stale_copy_in_the_root(tmp_path):
    truth = write_inaturalist(tmp_path)
    write_lines(tmp_path / "Inaturalist_train_set1.txt", truth["train"][:1])
    assert load_splits("inaturalist", str(tmp_path))["train"].paths == truth["train"]


def test_other_split_file_names_and_what_was_searched(tmp_path):
    truth = write_inaturalist(tmp_path)
    (tmp_path / SPLIT_FOLDER / "Inaturalist_test_set1.txt").rename(tmp_path / "my_test.txt")
    assert load_splits("inaturalist", str(tmp_path), test_list="my_test.txt")["test"].paths == truth["test"]
    with pytest.raises(DatasetNotFoundError, match=r"none of Inat_dataset_splits/Inaturalist_test_set1\.txt, "
                                                   r"Inaturalist_test_set1\.txt under .*data_prep/inaturalist\.py"):
        load_splits("inaturalist", str(tmp_path))


def test_a_line_that_is_not_a_path_names_file_and_line(tmp_path):
    write_inaturalist(tmp_path)
    write_lines(tmp_path / SPLIT_FOLDER / "Inaturalist_train_set1.txt", ["train_val2018/Aves/1/a.jpg", "Aves a.jpg 3"])
    with pytest.raises(DatasetFormatError, match=r"Inaturalist_train_set1\.txt:2: 'Aves a\.jpg 3' is not one"):
        load_splits("inaturalist", str(tmp_path))


def test_preparation_unpacks_the_authors_zip_where_their_loader_reads_it(tmp_path):
    """The README's step: unpack the split zip into the dataset root; the prepared root then parses."""
    staging, root = tmp_path / "staging", tmp_path / "root"
    truth = write_inaturalist(staging)
    archive = tmp_path / "splits.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted((staging / SPLIT_FOLDER).iterdir()):
            bundle.write(file, f"{SPLIT_FOLDER}/{file.name}")
    root.mkdir()
    (staging / "train_val2018").rename(root / "train_val2018")  # the images, already in place
    script = [sys.executable, str(REPO / "data_prep" / "inaturalist.py"), "--root", str(root), "--no-download"]
    result = subprocess.run(script + ["--archive", str(archive)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert load_splits("inaturalist", str(root))["test"].paths == truth["test"]
