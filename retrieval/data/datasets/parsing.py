"""What every dataset parser shares: locating files, reading line formats, errors that name file and line."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np


class DatasetNotFoundError(FileNotFoundError):
    """A dataset root or one of its files is not where the parser looks."""


class DatasetFormatError(ValueError):
    """A dataset file that does not follow its official format (names file and line)."""


def prepare_command(dataset: str) -> str:
    return f"python data_prep/{dataset}.py --root DIR"


def require_root(root: str | None, dataset: str) -> Path:
    """``root`` as a Path; an error naming the preparation command when it is unset or absent."""
    hint = (f"prepare it with `{prepare_command(dataset)}`, then give that folder as data.root (a config), "
            "--data-root (a table: the folder above it) or --root (data verify)")
    if root is None:
        raise DatasetNotFoundError(f"dataset {dataset!r} needs a root folder; {hint}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(f"dataset {dataset!r}: root {path} is not a folder; {hint}")
    return path


def first_present(root: Path, candidates: Sequence[str], folder: bool = False) -> Path | None:
    """``root / c`` for the first of ``candidates`` that is a file (a folder when ``folder``), else None: the
    places a dataset's documented layouts put the same thing."""
    return next((root / c for c in candidates if ((root / c).is_dir() if folder else (root / c).is_file())), None)


def find_file(root: Path, candidates: Sequence[str], dataset: str) -> Path:
    """The first of ``candidates`` (paths relative to ``root``) that exists."""
    path = first_present(root, candidates)
    if path is not None:
        return path
    raise DatasetNotFoundError(
        f"dataset {dataset!r}: found none of {', '.join(candidates)} under {root}; "
        f"prepare it with `{prepare_command(dataset)}`"
    )


def find_folder_with(root: Path, filename: str, subfolder: str, dataset: str) -> Path:
    """``root`` or ``root/subfolder``, whichever holds ``filename`` (a root given either way works)."""
    for folder in (root, root / subfolder):
        if (folder / filename).is_file():
            return folder
    raise DatasetNotFoundError(
        f"dataset {dataset!r}: {filename} is in neither {root} nor {root / subfolder}; "
        f"prepare it with `{prepare_command(dataset)}`"
    )


def format_error(path: Path, lineno: int, problem: str, layout: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}:{lineno}: {problem}; expected lines of the form '{layout}'")


def read_lines(path: Path, skip: int = 0) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` of the non-blank lines after the first ``skip`` lines."""
    try:
        with open(path, encoding="utf-8") as handle:
            for lineno, line in enumerate(handle, 1):
                if lineno > skip and line.strip():
                    yield lineno, line.strip()
    except UnicodeDecodeError as error:
        raise DatasetFormatError(f"{path}: not UTF-8 text ({error}); is this the right file?") from None


def read_fields(path: Path, layout: str, skip: int = 0) -> Iterator[tuple[int, list[str]]]:
    """Whitespace-separated fields of each line, exactly as many as ``layout`` names."""
    expected = len(layout.split())
    for lineno, line in read_lines(path, skip):
        fields = line.split()
        if len(fields) != expected:
            raise format_error(path, lineno, f"{len(fields)} fields instead of {expected} in {line!r}", layout)
        yield lineno, fields


def check_header(path: Path, lineno: int, header: str) -> None:
    """Line ``lineno`` of ``path`` must be ``header`` (up to whitespace)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if number == lineno:
                if line.split() != header.split():
                    raise DatasetFormatError(f"{path}:{lineno}: header {line.strip()!r}, expected {header!r}")
                return
    raise DatasetFormatError(f"{path}: ends before its header line {lineno} ({header!r})")


def parse_number(text: str, kind: type, path: Path, lineno: int, what: str, layout: str):
    """``kind(text)`` (int or float), or an error naming the file, line and field."""
    try:
        return kind(text)
    except ValueError:
        raise format_error(path, lineno, f"{what} {text!r} is not {'an integer' if kind is int else 'a number'}",
                           layout) from None


def encode(names: Sequence[str]) -> tuple[np.ndarray, dict[int, str]]:
    """int64 codes of string class ids (sorted order) and the code -> id mapping."""
    unique, codes = np.unique(np.asarray(names, dtype=str), return_inverse=True)
    return codes.astype(np.int64), {i: str(name) for i, name in enumerate(unique)}


def xywh_to_corners(boxes: np.ndarray) -> np.ndarray:
    """(x, y, width, height) rows to (x0, y0, x1, y1), float64."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
