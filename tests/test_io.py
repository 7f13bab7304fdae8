"""Atomic writes: whole or absent, no temporary files left, ordinary permissions."""
import os
import stat

import pytest

from retrieval.io import atomic_open, write_table, write_text


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_written_files_get_the_permissions_of_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_tables_are_written_as_csv_and_markdown(tmp_path):
    write_table(tmp_path / "t", [{"a": 1, "b": 0.5}, {"a": "x|y"}], ["a", "b"], title="T", notes="n")
    assert (tmp_path / "t.csv").read_text() == "a,b\n1,0.5\nx|y,\n"
    assert (tmp_path / "t.md").read_text() == "# T\n\nn\n\n| a | b |\n|---|---|\n| 1 | 0.5 |\n| x\\|y |  |\n"
