"""Checksummed downloads (kept only when they match) and extraction that cannot escape its folder."""
import hashlib
import io
import os
import tarfile
import zipfile

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
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, value in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(value)
                tar.addfile(info, io.BytesIO(value))
            else:
                info.type = {"symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
                info.linkname = value or ""
                tar.addfile(info)
    return path


def test_tar_and_zip_extract_with_a_marker(tmp_path):
    archive = make_tar(tmp_path / "a.tar.gz", [("jpg/a.jpg", "file", b"A"), ("jpg/b.jpg", "file", b"B"),
                                                ("jpg/link.jpg", "symlink", "a.jpg")])
    target = tmp_path / "out"
    assert extract(archive, target) == 3
    assert (target / "jpg" / "b.jpg").read_bytes() == b"B"
    assert (target / "jpg" / "link.jpg").read_bytes() == b"A"
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
    assert sorted(os.listdir(target)) == [".extracting-evil.tgz"]  # nothing written; the run is marked unfinished


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
