"""The steps every preparation script shares: obtain, verify, extract, place, report.

A script declares its resources (file name, official address or None when the dataset is behind
a registration, checksum where one is published) and the files a prepared root must hold, then
calls :func:`main`. Files are looked for in the downloads folder first (a file you fetched by
hand is used as is, after its checksum), downloaded when an address is known, and otherwise the
manual steps are printed. Archives are extracted without path traversal; a marker per archive
lets an interrupted run resume.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.data.archives import (
    ChecksumError,
    UnsafeArchiveError,
    download,
    extract,
    extraction_marker,
    is_archive,
    place,
    verify_checksum,
)

NEEDS_MANUAL_STEPS = 2


@dataclass(frozen=True)
class Resource:
    filename: str
    url: str | None = None  # None: behind a registration, the user fetches it
    checksum: str | None = None  # "md5:<hex>" or "sha256:<hex>", only where the provider publishes it
    into: str = ""  # folder under the root that receives it (extracted if an archive, else copied)


def obtain(resource: Resource, downloads: Path, allow_download: bool) -> Path | None:
    """The verified local copy of ``resource``, or None when the user must fetch it."""
    path = downloads / resource.filename
    if path.is_file():
        if resource.checksum is None:
            return path
        try:
            verify_checksum(path, resource.checksum)
            return path
        except ChecksumError as error:
            if resource.url is None or not allow_download:
                raise ChecksumError(f"{error}; delete it and fetch it again") from None
            print(f"{error}; downloading it again")
    if resource.url is None or not allow_download:
        return None
    print(f"downloading {resource.url}\n         -> {path}", flush=True)
    return download(resource.url, path, resource.checksum)


def install(path: Path, root: Path, into: str) -> None:
    """Extract an archive (unless a previous run finished it) or copy a plain file under ``root/into``."""
    target = root / into
    if is_archive(path):
        if extraction_marker(path, target).is_file():
            print(f"{path.name}: already extracted into {target}")
            return
        print(f"extracting {path.name} into {target}", flush=True)
        extract(path, target)
    else:
        place(path, target / path.name)


def flatten(folder: Path) -> None:
    """Move every file of ``folder``'s subfolders up into ``folder`` (archives that nest their images)."""
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for file in sorted(p for p in sub.rglob("*") if p.is_file()):
            destination = folder / file.name
            if destination.exists():
                raise FileExistsError(f"{file} and {destination} have the same name; cannot flatten {folder}")
            file.replace(destination)
        shutil.rmtree(sub)


def missing_files(root: Path, expected: Sequence[str | tuple[str, ...]]) -> list[str]:
    """The expected files absent from ``root``; a tuple is one file that may be in any of several places
    (the layouts the dataset's documentation gives), reported as ``a or b``."""
    missing = []
    for entry in expected:
        places = (entry,) if isinstance(entry, str) else entry
        if not any((root / place).exists() for place in places):
            missing.append(" or ".join(places))
    return missing


def unfinished_extractions(root: Path, resources: Sequence[Resource]) -> list[Path]:
    """Markers of extractions that started and never finished (an interrupted earlier run)."""
    folders = {root} | {root / r.into for r in resources}
    return sorted(marker for folder in folders if folder.is_dir() for marker in folder.glob(".extracting-*"))


def nested_root(root: Path, expected: Sequence[str | tuple[str, ...]]) -> Path | None:
    """A subfolder of ``root`` holding everything expected (an archive that unpacks into its own folder)."""
    if not root.is_dir():
        return None
    return next((sub for sub in sorted(root.iterdir()) if sub.is_dir() and not missing_files(sub, expected)), None)


def report_incomplete(name: str, root: Path, downloads: Path, absent: list[Resource], missing: list[str],
                      manual: str) -> int:
    print(f"\n{name} is not complete in {root}: not found {', '.join(missing)}.")
    if absent:
        print(f"Files that must be fetched into {downloads}: {', '.join(r.filename for r in absent)}")
    if manual:
        print("\n" + manual.format(root=root, downloads=downloads).strip() + "\n")
    print(f"Then run again: python data_prep/{name}.py --root {root}")
    return NEEDS_MANUAL_STEPS


def main(name: str, resources: Sequence[Resource], expected: Sequence[str | tuple[str, ...]], manual: str = "",
         after: Callable[[Path], None] | None = None, argv: Sequence[str] | None = None) -> int:
    """Prepare ``name`` under ``--root``; 0 when every expected file is there, 2 when steps are left to the user."""
    parser = argparse.ArgumentParser(prog=f"python data_prep/{name}.py", description=f"Prepare {name}.")
    parser.add_argument("--root", required=True, help="folder that will hold the prepared dataset")
    parser.add_argument("--downloads", help="folder for the downloaded files (default: ROOT/downloads)")
    parser.add_argument("--no-download", action="store_true", help="use only files already in the downloads folder")
    parser.add_argument("--archive", action="append", default=[], metavar="PATH",
                        help="an archive you obtained yourself, extracted into ROOT (repeatable)")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    downloads = Path(args.downloads).expanduser().resolve() if args.downloads else root / "downloads"
    if missing_files(root, expected) or unfinished_extractions(root, resources):
        downloads.mkdir(parents=True, exist_ok=True)
        try:
            for archive in args.archive:
                install(Path(archive).expanduser().resolve(), root, "")
            obtained = [(r, obtain(r, downloads, not args.no_download)) for r in resources]
            for resource, path in obtained:
                if path is not None:
                    install(path, root, resource.into)
            absent = [r for r, path in obtained if path is None]
            if after is not None and not absent:
                after(root)
        except (ChecksumError, UnsafeArchiveError, urllib.error.URLError, OSError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        missing = missing_files(root, expected)
        if missing:
            nested = nested_root(root, expected)
            if nested is None:
                return report_incomplete(name, root, downloads, absent, missing, manual)
            print(f"The files unpacked into the subfolder {nested}: use it as the root.")
            root = nested
    print(f"\n{name} is prepared in {root}.\nCheck it: python -m retrieval data verify {name} --root {root}")
    return 0
