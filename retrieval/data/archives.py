"""Downloads verified by checksum, and archive extraction that cannot write outside its target.

A download goes to a temporary file beside its destination and is renamed into place only once
its checksum (``"md5:<hex>"`` or ``"sha256:<hex>"``) matches, so a corrupted or tampered file is
never kept. Extraction checks every member before writing anything: absolute names, ``..``
components, links leading outside the target (resolved as they will be on disk, through the
archive's earlier links) and device files are refused with an error naming the member.
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
from typing import NamedTuple

from retrieval.io import atomic_open, write_text

CHUNK = 1 << 20
ALGORITHMS = ("md5", "sha1", "sha256")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
MAX_LINK_HOPS = 40  # the links Linux follows in one path (MAXSYMLINKS) before it reports a loop


class ChecksumError(ValueError):
    """A file whose digest is not the published one."""


class UnsafeArchiveError(ValueError):
    """An archive that cannot be extracted safely: a member that would land outside the target, or unreadable."""


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


def _check_name(archive: Path, name: str) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and ":" in path.parts[0]) or ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} would be written outside the target folder; "
                                 "refused, nothing was extracted")


class _Member(NamedTuple):
    """One archive member: ``kind`` is "dir", "file", "symlink" or "hardlink"; ``source`` opens its content."""

    name: str
    kind: str
    link: str
    source: object


def _tar_member(archive: Path, member: tarfile.TarInfo) -> _Member:
    kinds = {tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink"}
    kind = "file" if member.isfile() else kinds.get(member.type)
    if kind is None:
        raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or pipe; refused")
    return _Member(member.name, kind, member.linkname, member)


def _zip_member(archive: Path, member: zipfile.ZipInfo) -> _Member:
    if stat.S_ISLNK(member.external_attr >> 16):
        raise UnsafeArchiveError(f"{archive}: member {member.filename!r} is a symbolic link; refused")
    return _Member(member.filename, "dir" if member.is_dir() else "file", "", member)


class _LinkLoop(ValueError):
    """More links in one path than the OS follows."""


def _components(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split("/") if part not in ("", "."))


class _Tree:
    """The target folder as it will be on disk after each member, with links resolved here, not by the OS.

    A path is a tuple of components under the target. ``resolve`` follows every link the way the
    OS would (through the links the archive made so far and those already on disk), so a resolved
    path holds no link and writing to it follows none; it is None where the path leaves the target.
    This is what ``os.path.realpath`` cannot be trusted with: it stops expanding a path longer than
    PATH_MAX (CVE-2025-4517).
    """

    def __init__(self, root: Path):
        self.root = root
        self.entries: dict[tuple[str, ...], tuple[str, str] | None] = {}  # path -> (kind, link text)
        self.links: list[tuple[str, tuple[str, ...]]] = []  # (member name, link path) of the links added

    def entry(self, path: tuple[str, ...]) -> tuple[str, str] | None:
        if path not in self.entries:
            self.entries[path] = self._on_disk(path)
        return self.entries[path]

    def _on_disk(self, path: tuple[str, ...]) -> tuple[str, str] | None:
        """What a previous extraction left at ``path`` (a resolved path, so lstat follows no link)."""
        location = self.root.joinpath(*path)
        try:
            mode = os.lstat(location).st_mode
        except OSError:  # absent, or a name too long to exist
            return None
        if stat.S_ISLNK(mode):
            return "symlink", os.readlink(location)
        return ("dir" if stat.S_ISDIR(mode) else "file"), ""

    def resolve(self, parts: tuple[str, ...], start: tuple[str, ...] = ()) -> tuple[str, ...] | None:
        return self._walk(start, parts, [0])

    def _walk(self, start: tuple[str, ...], parts: tuple[str, ...], hops: list[int]) -> tuple[str, ...] | None:
        current = list(start)
        for part in parts:
            if part == "..":
                if not current:
                    return None
                current.pop()
                continue
            current.append(part)
            entry = self.entry(tuple(current))
            if entry is not None and entry[0] == "symlink":
                hops[0] += 1
                if hops[0] > MAX_LINK_HOPS:
                    raise _LinkLoop
                if entry[1].startswith("/"):
                    return None
                resolved = self._walk(tuple(current[:-1]), _components(entry[1]), hops)
                if resolved is None:
                    return None
                current = list(resolved)
        return tuple(current)

    def add(self, member: _Member) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """Record ``member``; its resolved destination and, for a hard link, the file it links to.

        Raises ValueError saying why the member cannot be written safely.
        """
        parts = _components(member.name)
        if not parts:
            if member.kind == "dir":
                return (), None
            raise ValueError("has no name")
        parent = self.resolve(parts[:-1])
        if parent is None:
            raise ValueError("would be written outside the target folder through a link")
        for depth in range(1, len(parent) + 1):
            folder = self.entry(parent[:depth])
            if folder is None:
                self.entries[parent[:depth]] = ("dir", "")
            elif folder[0] != "dir":
                raise ValueError(f"would be written inside {'/'.join(parent[:depth])!r}, which is not a folder")
        destination = parent + parts[-1:]
        existing = self.entry(destination)
        kind = "file" if member.kind == "hardlink" else member.kind
        if existing is not None and not (existing[0] == kind and kind in ("dir", "file")):
            raise ValueError(f"would replace the {existing[0]} already at {'/'.join(destination)!r}")
        linked = None
        if member.kind in ("symlink", "hardlink") and not member.link:
            raise ValueError("is a link to nothing (an empty target)")
        if member.kind == "symlink":
            if member.link.startswith("/") or self.resolve(_components(member.link), parent) is None:
                raise ValueError(f"links to {member.link!r}, outside the target folder")
            self.links.append((member.name, destination))
        elif member.kind == "hardlink":
            linked = self.resolve(_components(member.link))
            if linked is None:
                raise ValueError(f"is a hard link to {member.link!r}, outside the target folder")
            if (self.entry(linked) or ("nothing", ""))[0] != "file":
                raise ValueError(f"is a hard link to {member.link!r}, which is not a file in the target folder")
        self.entries[destination] = (kind, member.link if kind == "symlink" else "")
        return destination, linked

    def check_links(self) -> None:
        """Every link added still leads inside once the whole archive is in place (a link may dangle
        when it is written and lead elsewhere once later members exist)."""
        for name, path in self.links:
            if self.resolve(_components(self.entries[path][1]), path[:-1]) is None:
                raise _Refused(name, f"links to {self.entries[path][1]!r}, outside the target folder "
                                     "once the archive's other members exist")


class _Refused(ValueError):
    def __init__(self, name: str, reason: str):
        super().__init__(reason)
        self.name = name


def _plan(archive: Path, members: list[_Member], target: Path) -> list[tuple]:
    """Every member with where it goes; UnsafeArchiveError naming the first member that cannot go safely."""
    tree, plan = _Tree(target), []
    try:
        for member in members:
            _check_name(archive, member.name)
            try:
                plan.append((member, *tree.add(member)))
            except _LinkLoop:
                raise _Refused(member.name, f"follows more than {MAX_LINK_HOPS} links (a loop)") from None
            except ValueError as error:
                raise _Refused(member.name, str(error)) from None
        tree.check_links()
    except _LinkLoop:
        raise UnsafeArchiveError(f"{archive}: its links form a loop; refused") from None
    except _Refused as refused:
        raise UnsafeArchiveError(f"{archive}: member {refused.name!r} {refused}; refused, nothing was "
                                 "extracted") from None
    return plan


def _real_folder(root: Path, parts: tuple[str, ...], known: set) -> None:
    """Create ``root/parts`` folder by folder, checking (without following links) that each is a folder."""
    for depth in range(1, len(parts) + 1):
        if parts[:depth] in known:
            continue
        path = root.joinpath(*parts[:depth])
        try:
            os.mkdir(path)
        except FileExistsError:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                raise UnsafeArchiveError(f"{path} is no longer a folder (changed during the extraction)") from None
        known.add(parts[:depth])


def _write(root: Path, plan: list[tuple], content) -> None:
    """Write planned members to their resolved paths: no link on the way is followed by the OS."""
    known: set = set()
    for member, destination, linked in plan:
        _real_folder(root, destination if member.kind == "dir" else destination[:-1], known)
        if member.kind == "dir":
            continue
        path = root.joinpath(*destination)
        if os.path.lexists(path):  # a file of an earlier member or extraction, replaced (the plan allows no other)
            os.unlink(path)
        if member.kind == "symlink":
            os.symlink(member.link, path)
        elif member.kind == "hardlink":
            os.link(root.joinpath(*linked), path, follow_symlinks=False)
        else:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
            with os.fdopen(descriptor, "wb") as out, content(member.source) as source:
                shutil.copyfileobj(source, out, CHUNK)


@contextlib.contextmanager
def _members(archive: Path):
    """The archive's members and a function opening a member's content."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as bundle:
                yield [_zip_member(archive, info) for info in bundle.infolist()], bundle.open
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tar:
                yield [_tar_member(archive, info) for info in tar.getmembers()], tar.extractfile
        else:
            raise UnsafeArchiveError(f"{archive} is neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as error:
        raise UnsafeArchiveError(f"{archive}: cannot be read ({type(error).__name__}: {error})") from None


def is_archive(path: str | os.PathLike) -> bool:
    """Whether the file name says tar or zip archive (by name: a .mat or .pkl is never unpacked)."""
    return Path(path).name.lower().endswith(ARCHIVE_SUFFIXES)


def extract(archive: str | os.PathLike, target: str | os.PathLike) -> int:
    """Extract a tar (any compression) or zip archive into ``target``; returns the number of members.

    Every member is checked before anything is written (:class:`UnsafeArchiveError` naming the
    first one refused), against a model of the folder as it will be on disk; the standard
    library's extraction filter, whose safety depends on the Python version, is not relied on.
    ``target/.extracting-<archive name>`` exists while it runs and ``.extracted-<archive name>``
    once it finished, so an interrupted extraction is recognised (and redone) by a re-run.
    """
    archive, target = Path(archive), Path(target).resolve()
    with _members(archive) as (members, content):
        plan = _plan(archive, members, target)
        target.mkdir(parents=True, exist_ok=True)
        running = extraction_marker(archive, target, finished=False)
        write_text(running, "")
        _write(target, plan, content)
    write_text(extraction_marker(archive, target), f"{len(members)} members\n")
    running.unlink()
    return len(members)


def extraction_marker(archive: str | os.PathLike, target: str | os.PathLike, finished: bool = True) -> Path:
    return Path(target) / f".{'extracted' if finished else 'extracting'}-{Path(archive).name}"


def place(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Copy a plain file (e.g. a list or a pickle) into place atomically."""
    with open(source, "rb") as original, atomic_open(destination, "wb") as copy:
        shutil.copyfileobj(original, copy, CHUNK)
    return Path(destination)
