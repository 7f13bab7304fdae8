"""Crash-safe file writes: a file is either its old whole self or its new whole self."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w"):
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes private files; give the permissions open() would
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError) and error.errno and error.filename is None:  # a failed write: name the file
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_text(path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_json(path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def torch_save(obj, path) -> None:
    """``torch.save`` through :func:`atomic_open`; a failed write raises its ``OSError`` (e.g. ENOSPC)."""
    import torch

    with atomic_open(path, "wb") as handle:
        try:
            torch.save(obj, handle)
        except RuntimeError as error:  # torch's writer reports a failed write as "unexpected pos ..."
            if isinstance(error.__context__, OSError):
                raise error.__context__ from None
            raise


def csv_text(rows: Iterable[Mapping], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: "" if row.get(c) is None else row.get(c) for c in columns})
    return buffer.getvalue()


def markdown_table(rows: Iterable[Mapping], columns: list[str], floatfmt: str = "{:.4g}") -> str:
    def cell(value):
        if value is None or value == "":
            return ""
        return floatfmt.format(value) if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_table(stem, rows: list[Mapping], columns: list[str], title: str = "", notes: str = "") -> None:
    """Write ``stem.csv`` and ``stem.md`` (title, notes, then the table), each atomically."""
    rows = list(rows)
    write_text(f"{stem}.csv", csv_text(rows, columns))
    header = (f"# {title}\n\n" if title else "") + (f"{notes.strip()}\n\n" if notes else "")
    write_text(f"{stem}.md", header + markdown_table(rows, columns))
