"""IJB-C from its metadata table: instances are media (videos grouped), identities with < 5 instances removed."""
import numpy as np
import pytest
from fixtures import IJBC_HEADER, crop_sizes, write_ijbc, write_lines

from retrieval.data.datasets.parsing import DatasetFormatError
from retrieval.data.split import load_splits


def test_instances_and_removed_identities(tmp_path):
    rows = write_ijbc(tmp_path)
    split = load_splits("ijbc", str(tmp_path))["test"]
    kept = [(subject, filename, media) for subject, filename, media in rows if subject != 2]
    assert split.paths == [filename for _, filename, _ in kept]
    assert split.labels.tolist() == [subject for subject, _, _ in kept]
    assert split.root == str(tmp_path / "images")
    # frames of one video share a group; every still image is its own group
    same_instance = [[(s1, m1) == (s2, m2) for s2, _, m2 in kept] for s1, _, m1 in kept]
    assert [[a == b for b in split.groups] for a in split.groups] == same_instance
    assert len(np.unique(split.groups)) == 5 + 5
    assert split.extra["removed_identities"] == 1 and split.extra["removed_images"] == 5
    assert crop_sizes(split) == [(15, 12)] * len(split)


def test_another_media_column_can_be_chosen(tmp_path):
    rows = write_ijbc(tmp_path)
    path = tmp_path / "protocols" / "ijbc_metadata.csv"
    path.write_text(path.read_text().replace("SIGHTING_ID", "MEDIA_ID", 1))
    split = load_splits("ijbc", str(tmp_path), media_column="MEDIA_ID")["test"]
    assert len(np.unique(split.groups)) == 5 + 5 and len(split) == len(rows) - 5


def test_fewer_instances_needed_keeps_everyone(tmp_path):
    rows = write_ijbc(tmp_path)
    split = load_splits("ijbc", str(tmp_path), min_instances=3)["test"]
    assert len(split) == len(rows) and split.extra["removed_identities"] == 0


def test_a_missing_column_lists_the_header_and_the_option(tmp_path):
    write_ijbc(tmp_path)
    with pytest.raises(DatasetFormatError, match=r"no column \['VIDEO_ID'\].*media_column="):
        load_splits("ijbc", str(tmp_path), media_column="VIDEO_ID")


def test_a_bad_subject_names_file_and_line(tmp_path):
    write_lines(tmp_path / "ijbc_metadata.csv", [IJBC_HEADER, "1,img/1.jpg,5,1,1,4,4", "one,img/2.jpg,6,1,1,4,4"])
    with pytest.raises(DatasetFormatError, match=r"ijbc_metadata\.csv:3: SUBJECT_ID 'one' is not an integer"):
        load_splits("ijbc", str(tmp_path))
