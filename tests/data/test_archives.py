"""Checksummed downloads (kept only when they match) and extraction that cannot escape its folder."""
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from retrieval.data.archives import (
    ChecksumError,
    UnsafeArchiveError,
    download,
    extract,
    extraction_marker,
    verify_checksum,
)

PAYLOAD = b"images and lists " * 1000
REPO = Path(__file__).resolve().parents[2]


def md5(data: bytes) -> str:
    return "md5:" + hashlib.md5(data).hexdigest()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "served" / "dataset.tgz"
    path.parent.mkdir()
    path.write_bytes(PAYLOAD)
    return path


@pytest.mark.parametrize("checksum", [None, md5(PAYLOAD), sha256(PAYLOAD)], ids=["none", "md5", "sha256"])
def test_download_keeps_a_matching_file(tmp_path, source, checksum):
    destination = download(source.as_uri(), tmp_path / "downloads" / "dataset.tgz", checksum)
    assert destination.read_bytes() == PAYLOAD
    assert os.listdir(tmp_path / "downloads") == ["dataset.tgz"]


def test_a_checksum_mismatch_keeps_nothing(tmp_path, source):
    wrong = md5(b"another release")
    with pytest.raises(ChecksumError, match=r"dataset\.tgz: downloaded md5 .* expected .*not kept"):
        download(source.as_uri(), tmp_path / "downloads" / "dataset.tgz", wrong)
    assert os.listdir(tmp_path / "downloads") == []


def test_a_mismatch_never_replaces_an_existing_file(tmp_path, source):
    destination = tmp_path / "dataset.tgz"
    destination.write_bytes(b"previous")
    with pytest.raises(ChecksumError):
        download(source.as_uri(), destination, md5(b"another release"))
    assert destination.read_bytes() == b"previous"


def test_an_interrupted_transfer_leaves_no_file(tmp_path):
    class Broken(io.BytesIO):
        def read(self, size=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset")
            return super().read(10)

    with pytest.raises(ConnectionResetError):
        download("https://example.org/x.tgz", tmp_path / "x.tgz", opener=lambda url: Broken(PAYLOAD))
    assert os.listdir(tmp_path) == []


def test_verify_checksum(tmp_path, source):
    verify_checksum(source, md5(PAYLOAD))
    with pytest.raises(ChecksumError, match=r"dataset\.tgz: md5 is [0-9a-f]{32}, expected 0+"):
        verify_checksum(source, "md5:" + "0" * 32)
    with pytest.raises(ValueError, match="algorithm"):
        verify_checksum(source, "crc32:1234")


def make_tar(path, members):
    """members: (TarInfo name, kind, payload or link target)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:  # PAX: names and links of any length
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
                             "dir": tarfile.DIRTYPE}[kind]
                info.linkname = value or ""
                tar.addfile(info)
    return path


def test_tar_and_zip_extract_with_a_marker(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [
        ("jpg/a.jpg", "file", b"A"), ("jpg/b.jpg", "file", b"B"), ("jpg/link.jpg", "symlink", "a.jpg"),
        ("jpg/hard.jpg", "hardlink", "jpg/b.jpg"), ("images", "symlink", "jpg"), ("here", "symlink", "."),
        ("here/images/c.jpg", "file", b"C")])  # links inside the target, chained, are followed
    target = tmp_path / "out"
    assert extract(archive, target) == 7
    assert (target / "jpg" / "b.jpg").read_bytes() == b"B"
    assert (target / "jpg" / "link.jpg").read_bytes() == b"A"
    assert (target / "jpg" / "hard.jpg").read_bytes() == b"B"
    assert (target / "jpg" / "c.jpg").read_bytes() == b"C" and (target / "images").is_symlink()
    assert extraction_marker(archive, target).is_file()
    assert not extraction_marker(archive, target, finished=False).exists()
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as bundle:
        bundle.writestr("lists/train.txt", "1 1\n")
    assert extract(tmp_path / "b.zip", target) == 1
    assert (target / "lists" / "train.txt").read_text() == "1 1\n"


@pytest.mark.parametrize("member", [
    ("../x", "file", b"escaped"),
    ("jpg/../../x", "file", b"escaped"),
    ("/tmp/retrieval-absolute-x", "file", b"escaped"),
    ("jpg/up", "symlink", "../../x"),
    ("jpg/abs", "symlink", "/etc/passwd"),
    ("jpg/hard", "hardlink", "../x"),
    ("jpg/pipe", "fifo", None),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute", "hardlink-out", "fifo"])
def test_tar_members_escaping_the_target_are_refused(tmp_path, member):
    archive = make_tar(tmp_path / "evil.tgz", [member])
    target = tmp_path / "nested" / "out"
    with pytest.raises(UnsafeArchiveError, match=rf"evil\.tgz: member {member[0]!r}"):
        extract(archive, target)
    assert not (tmp_path / "x").exists() and not (tmp_path / "nested" / "x").exists()
    assert not os.path.exists("/tmp/retrieval-absolute-x")
    assert not target.exists()  # refused before anything is written, the target folder and its marker included


def path_max_chain(destination):
    """The members of CVE-2025-4517's archive (CPython's regression test for gh-135034): 16 nested folders
    with names so long that the unexpanded path fits PATH_MAX but the expanded one does not, a one-letter
    link to each, a link climbing back out of the chain, and a hard link and files written through it."""
    steps = "abcdefghijklmnop"
    length = (os.pathconf(destination.parent, "PC_PATH_MAX") - len(str(destination)) - 1) // (len(steps) + 1)
    component, members, folder = "d" * length, [], ""
    for step in steps:
        members += [(os.path.join(folder, component), "dir", None), (os.path.join(folder, step), "symlink", component)]
        folder = os.path.join(folder, component)
    climb = os.path.join(*steps, "l" * 254)
    members += [(climb, "symlink", os.path.join(*[".."] * len(steps))),
                ("escape", "symlink", os.path.join(climb, "..")),
                ("flaglink", "hardlink", "escape/flag"),
                ("flaglink", "file", b"overwritten"),
                ("escape/newfile", "file", b"created")]
    return members


def test_the_path_max_symlink_chain_writes_nothing_outside_the_target(tmp_path):
    outside = tmp_path / "outside"
    target = outside / "dataset"
    outside.mkdir()
    (outside / "flag").write_bytes(b"sentinel")
    archive = make_tar(tmp_path / "chain.tar.gz", path_max_chain(target))
    with pytest.raises(UnsafeArchiveError, match=r"chain\.tar\.gz: member 'escape' links to .*outside the target"):
        extract(archive, target)
    assert (outside / "flag").read_bytes() == b"sentinel"
    assert sorted(os.listdir(outside)) == ["flag"]  # no new file, and no target folder: nothing was written


def test_a_preparation_script_refuses_the_path_max_chain_and_writes_nothing_outside(tmp_path):
    outside = tmp_path / "outside"
    root = outside / "vehicleid"
    outside.mkdir()
    (outside / "flag").write_bytes(b"sentinel")
    archive = make_tar(tmp_path / "VehicleID_V1.0.tar.gz", path_max_chain(root))
    script = [sys.executable, str(REPO / "data_prep" / "vehicleid.py"), "--root", str(root), "--archive", str(archive)]
    done = subprocess.run(script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "member 'escape' links to" in done.stderr, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert (outside / "flag").read_bytes() == b"sentinel"
    assert sorted(os.listdir(outside)) == ["flag", "vehicleid"]
    assert sorted(p.name for p in root.rglob("*")) == ["downloads"]  # the script's own (empty) downloads folder


@pytest.mark.parametrize("members, refused", [
    ([("d1", "symlink", "."), ("d1/up", "symlink", ".."), ("d1/up/x", "file", b"escaped")], "d1/up"),
    ([("l", "symlink", "x/.."), ("x", "symlink", ".")], "l"),
    ([("a", "symlink", "b"), ("b", "symlink", "a"), ("a/x", "file", b"looped")], "a/x"),
    ([("jpg", "symlink", "."), ("jpg/../../x", "file", b"escaped")], "jpg/../../x"),
    ([("jpg/a.jpg", "file", b"A"), ("empty", "symlink", "")], "empty"),
], ids=["chained-links", "dangling-then-escaping", "loop", "dotdot-after-link", "empty-link"])
def test_links_that_lead_out_once_resolved_are_refused_and_leave_nothing(tmp_path, members, refused):
    archive = make_tar(tmp_path / "evil.tgz", members)
    target = tmp_path / "nested" / "out"
    with pytest.raises(UnsafeArchiveError, match=rf"evil\.tgz: member {refused!r} .*refused, nothing was extracted"):
        extract(archive, target)
    assert sorted(os.listdir(tmp_path)) == ["evil.tgz"]


def test_links_already_in_the_target_are_followed_as_on_disk(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    os.symlink(".", target / "d1")  # left by an earlier archive: harmless on its own
    archive = make_tar(tmp_path / "second.tgz", [("d1/up", "symlink", "..")])
    with pytest.raises(UnsafeArchiveError, match=r"member 'd1/up' links to '\.\.', outside"):
        extract(archive, target)
    assert sorted(os.listdir(target)) == ["d1"]


def test_a_zip_is_checked_against_the_links_already_on_disk_too(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    os.symlink("..", target / "up")  # not made by an archive (one would have been refused): a zip must not follow it
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as bundle:
        bundle.writestr("fine.txt", "ok")
        bundle.writestr("up/x", "escaped")
    with pytest.raises(UnsafeArchiveError, match=r"images\.zip: member 'up/x' would be written outside the target"):
        extract(tmp_path / "images.zip", target)
    assert sorted(os.listdir(tmp_path)) == ["images.zip", "out"] and sorted(os.listdir(target)) == ["up"]


def test_zip_member_escaping_the_target_is_refused_before_anything_is_written(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as bundle:
        bundle.writestr("fine.txt", "ok")
        bundle.writestr("../x", "escaped")
    with pytest.raises(UnsafeArchiveError, match=r"evil\.zip: member '\.\./x'"):
        extract(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "x").exists() and not (tmp_path / "out" / "fine.txt").exists()


def test_something_that_is_not_an_archive_is_named(tmp_path):
    (tmp_path / "notes.tgz").write_text("plain text")
    with pytest.raises(UnsafeArchiveError, match=r"notes\.tgz is neither a tar nor a zip"):
        extract(tmp_path / "notes.tgz", tmp_path / "out")
