"""Downloads verified by checksum, and archive extraction that cannot write outside its target.

A download goes to a temporary file beside its destination and is renamed into place only once
its checksum (``"md5:<hex>"`` or ``"sha256:<hex>"``) matches, so a corrupted or tampered file is
never kept. Extraction checks every member before writing it: absolute names, ``..`` components,
links leading outside the target and device files are refused with an error naming the member.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from retrieval.io import atomic_open, write_text

CHUNK = 1 << 20
ALGORITHMS = ("md5", "sha1", "sha256")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


class ChecksumError(ValueError):
    """A file whose digest is not the published one."""


class UnsafeArchiveError(ValueError):
    """An archive member that would land outside the extraction folder."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in ALGORITHMS or not digest:
        raise ValueError(f"checksum {checksum!r}: expected '<algorithm>:<hex digest>' with algorithm in {ALGORITHMS}")
    return algorithm, digest.lower()


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, checksum: str) -> None:
    """Raise :class:`ChecksumError` unless the file at ``path`` has ``checksum``."""
    algorithm, expected = parse_checksum(checksum)
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(f"{path}: {algorithm} is {actual}, expected {expected}")


def download(url: str, destination: str | os.PathLike, checksum: str | None = None,
             opener=urllib.request.urlopen) -> Path:
    """Fetch ``url`` to ``destination``; with ``checksum``, the file is kept only if it matches."""
    algorithm, expected = parse_checksum(checksum) if checksum else ("sha256", None)
    digest = hashlib.new(algorithm)
    with atomic_open(destination, "wb") as out, contextlib.closing(opener(url)) as response:
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        if expected is not None and digest.hexdigest() != expected:
            raise ChecksumError(f"{url}: downloaded {algorithm} {digest.hexdigest()}, expected {expected}; "
                                "the file was not kept (interrupted transfer, or a changed or tampered file)")
    return Path(destination)


def _inside(target: Path, relative: str) -> bool:
    """Whether ``target/relative`` (resolved, without following links that do not exist yet) stays in target."""
    resolved = os.path.normpath(os.path.join(target, relative))
    return resolved == str(target) or resolved.startswith(str(target) + os.sep)


def _check_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the target folder; refused")


def _check_tar_member(archive: Path, member: tarfile.TarInfo, target: Path) -> None:
    _check_name(archive, member.name)
    if member.issym():
        link = os.path.join(os.path.dirname(member.name), member.linkname)
        if os.path.isabs(member.linkname) or not _inside(target, link):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} links to {member.linkname!r}, "
                                     "outside the target folder; refused")
    elif member.islnk():
        if os.path.isabs(member.linkname) or not _inside(target, member.linkname):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a hard link to {member.linkname!r}, "
                                     "outside the target folder; refused")
    elif not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or pipe; refused")


def _extract_tar(archive: Path, target: Path) -> int:
    count = 0
    with tarfile.open(archive) as tar:
        for member in tar:
            _check_tar_member(archive, member, target)
            tar.extract(member, target, filter="data")  # the standard library's own guard, as a second line
            count += 1
    return count


def _extract_zip(archive: Path, target: Path) -> int:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        for member in members:
            _check_name(archive, member.filename)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise UnsafeArchiveError(f"{archive}: member {member.filename!r} is a symbolic link; refused")
        for member in members:
            bundle.extract(member, target)
    return len(members)


def is_archive(path: str | os.PathLike) -> bool:
    """Whether the file name says tar or zip archive (by name: a .mat or .pkl is never unpacked)."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> int:
    """Extract a tar (any compression) or zip archive into ``target``; returns the number of members.

    ``target/.extracting-<archive name>`` exists while it runs and ``.extracted-<archive name>``
    once it finished, so an interrupted extraction is recognised (and redone) by a re-run.
    """
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    running = extraction_marker(archive, target, finished=False)
    write_text(running, "")
    if zipfile.is_zipfile(archive):
        count = _extract_zip(archive, target)
    elif tarfile.is_tarfile(archive):
        count = _extract_tar(archive, target)
    else:
        raise UnsafeArchiveError(f"{archive} is neither a tar nor a zip archive")
    write_text(extraction_marker(archive, target), f"{count} members\n")
    running.unlink()
    return count


def extraction_marker(archive: str | os.PathLike, target: str | os.PathLike, finished: bool = True) -> Path:
    return Path(target) / f".{'extracted' if finished else 'extracting'}-{Path(archive).name}"


def place(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a plain file (e.g. a list or a pickle) into place atomically."""
    with open(source, "rb") as original, atomic_open(destination, "wb") as copy:
        shutil.copyfileobj(original, copy, CHUNK)
    return Path(destination)
