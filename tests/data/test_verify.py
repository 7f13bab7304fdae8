"""``python -m retrieval data verify``: published statistics, missing and unreadable images, named."""
import numpy as np
import pytest
from fixtures import (
    truncate,
    write_cub200,
    write_decompression_bomb,
    write_ijbc,
    write_inshop,
    write_revisited,
    write_vggface2,
)
from PIL import Image

from retrieval.data.split import Split, load_splits
from retrieval.data.verify import PUBLISHED, Statistics, check_split_files, duplicate_files, main, verify


@pytest.fixture
def damaged_cub(tmp_path):
    """A CUB fixture with one missing train image and one truncated test image."""
    records = write_cub200(tmp_path)
    images = tmp_path / "CUB_200_2011" / "images"
    (images / records[0]["path"]).unlink()
    truncate(images / records[-1]["path"])
    return tmp_path, records


def run_main(argv, capsys) -> tuple[int, str]:
    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().out


def test_missing_and_truncated_images_are_counted_and_named(damaged_cub, capsys):
    root, records = damaged_cub
    code, out = run_main(["cub200", "--root", str(root)], capsys)
    assert code == 1
    assert f"train: 1 of 6 image files missing under {root / 'CUB_200_2011' / 'images'}, first: {records[0]['path']}" \
        in out
    assert f"test: 1 of 4 decoded images unreadable, first: {records[-1]['path']} (" in out
    assert "train: 6 images, published 5,864" in out and "test: 2 classes, published 100" in out


def test_quick_checks_existence_only(damaged_cub, capsys):
    root, _ = damaged_cub
    code, out = run_main(["cub200", "--root", str(root), "--quick"], capsys)
    assert code == 1 and "1 of 6 image files missing" in out and "unreadable" not in out


def test_sampling_decodes_only_that_many(damaged_cub, capsys):
    root, _ = damaged_cub
    _, out = run_main(["cub200", "--root", str(root), "--sample", "2"], capsys)
    assert "test: 2 images decoded without error" in out or "test: 1 of 2 decoded images unreadable" in out


def test_a_complete_copy_with_the_expected_sizes_passes(tmp_path):
    write_cub200(tmp_path)
    report = verify("cub200", str(tmp_path), published={"train": Statistics(6, 3), "test": Statistics(4, 2)})
    assert report.ok, report.text()
    assert "train: 6 images, as published" in report.text()


def test_roles_and_a_missing_split_are_compared(tmp_path):
    write_inshop(tmp_path)
    report = verify("inshop", str(tmp_path), published={"test": Statistics(5, 2, queries=2, gallery=4),
                                                        "val": Statistics(1)})
    assert report.problems == ["val: split missing (the dataset returned ['test', 'train'])",
                               "test: 3 gallery images, published 4"]


def test_revisited_counts_queries_gallery_and_distractors(tmp_path):
    write_revisited(tmp_path / "rparis6k", "rparis6k")
    report = verify("rparis6k", str(tmp_path / "rparis6k"))
    assert "test: 2 queries, published 70" in report.problems
    assert "test: 5 gallery images, published 6,322" in report.problems


def test_only_the_requested_splits_are_expected(tmp_path):
    write_vggface2(tmp_path)
    report = verify("vggface2", str(tmp_path), {"splits": ["test"]})
    assert report.problems == ["test: 2 classes, published 500"]


def test_dataset_without_published_statistics_still_checks_files(tmp_path):
    write_ijbc(tmp_path)
    report = verify("ijbc", str(tmp_path))
    assert report.ok and "no published statistics" in report.text()
    assert "test: 1 removed identities by the protocol" in report.text()


def test_a_dataset_that_cannot_be_parsed_says_how_to_prepare_it(tmp_path, capsys):
    code, out = run_main(["vehicleid", "--root", str(tmp_path / "absent")], capsys)
    assert code == 1 and "python data_prep/vehicleid.py --root DIR" in out


def test_check_split_files_for_the_trainer(damaged_cub):
    root, records = damaged_cub
    train = load_splits("cub200", str(root))["train"]
    assert check_split_files(train) == (1, [records[0]["path"]])
    for record in records[1:3]:
        (root / "CUB_200_2011" / "images" / record["path"]).unlink()
    count, names = check_split_files(train, max_names=2)
    assert count == 3 and names == [records[0]["path"], records[1]["path"]]
    assert check_split_files(Split("synthetic", labels=[0], images=[None])) == (0, [])


def test_every_registered_dataset_has_published_statistics_or_none_on_purpose():
    from retrieval.data.split import DATASETS

    real = set(DATASETS.names()) - {"digits", "synthetic"}
    assert real == set(PUBLISHED)


def test_the_command_line(damaged_cub, capsys):
    """``python -m retrieval data verify`` reaches this module's main (run in-process: no second interpreter)."""
    from retrieval.cli import main as cli

    root, records = damaged_cub
    with pytest.raises(SystemExit) as exit:
        cli(["data", "verify", "cub200", "--root", str(root), "--quick"])
    assert exit.value.code == 1 and records[0]["path"] in capsys.readouterr().out


def test_a_decompression_bomb_is_reported_with_the_limit_like_any_unreadable_image(tmp_path, capsys):
    records = write_cub200(tmp_path)
    write_decompression_bomb(tmp_path / "CUB_200_2011" / "images" / records[-1]["path"])  # 15000 x 15000 pixels
    code, out = run_main(["cub200", "--root", str(tmp_path)], capsys)
    assert code == 1
    assert f"test: 1 of 4 decoded images unreadable, first: {records[-1]['path']} (DecompressionBombError: " in out
    assert f"{15_000 ** 2} pixels) exceeds limit of {2 * Image.MAX_IMAGE_PIXELS} pixels" in out


def test_an_image_listed_under_two_ids_is_reported(tmp_path, capsys):
    records = write_cub200(tmp_path)
    listed = [r["path"] for r in records]
    listed[1] = listed[0]  # ids 1 and 2 (both training images of class 1) name the same file
    (tmp_path / "CUB_200_2011" / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(listed)))
    code, out = run_main(["cub200", "--root", str(tmp_path)], capsys)
    assert code == 1
    assert f"train: 1 image files listed more than once (under several ids), first: {listed[0]} (2 times)" in out
    assert out.count("listed more than once") == 1  # the test split lists every file once


def test_a_file_listed_once_in_each_of_several_instances_is_no_duplicate():
    split = Split("test", labels=np.zeros(4, dtype=np.int64), paths=["a.jpg", "b.jpg", "a.jpg", "./b.jpg"],
                  groups=np.array([0, 0, 1, 0]))
    assert duplicate_files(split) == {"b.jpg": 2}
