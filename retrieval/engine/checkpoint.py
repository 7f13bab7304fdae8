"""Checkpoints that are either whole or absent, and a resume that skips damaged ones."""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import torch

from retrieval.io import torch_save, write_text

log = logging.getLogger(__name__)
NAME = re.compile(r"^step-(\d{9})\.pt$")


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be loaded: truncated, corrupted, or more than tensors and plain data."""


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint or model file, loaded with ``weights_only=True``; :class:`CheckpointError` naming it otherwise."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for a truncated, foreign or code-carrying file
        reason = next(iter(str(error).strip().splitlines()), "")
        raise CheckpointError(f"cannot load {path}: {type(error).__name__}: {reason} (a truncated or corrupted "
                              "file, or one holding more than tensors and plain data, which is refused)") from None


class CheckpointStore:
    """``run_dir/checkpoints/step-NNNNNNNNN.pt`` plus a ``.sha256`` beside each.

    A checkpoint is written to a temporary file, fsynced and renamed, then its digest is
    written the same way: a checkpoint without a matching digest is not trusted. The newest
    ``keep`` checkpoints are kept, so a damaged newest one falls back to the one before.
    """

    def __init__(self, run_dir: str | Path, keep: int = 2):
        self.dir = Path(run_dir) / "checkpoints"
        self.keep = keep

    def paths(self) -> list[Path]:
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if NAME.match(p.name))

    def save(self, state: dict, global_step: int) -> Path:
        path = self.dir / f"step-{global_step:09d}.pt"
        try:
            torch_save(state, path)
            write_text(path.with_suffix(".sha256"), _digest(path) + "\n")
        except OSError as error:
            whole = [p.name for p in self.paths() if p != path and self.verify(p) is None]
            raise OSError(error.errno, f"cannot write checkpoint {path}: {error.strerror}. The previous checkpoints "
                          f"in {self.dir} are whole ({', '.join(whole) or 'none yet'}); free space and run the "
                          "same command to resume") from None
        # A checkpoint newer than this one was rejected by the resume that led here: it is no fallback.
        older = [p for p in self.paths() if p <= path]
        for old in [p for p in self.paths() if p > path] + older[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".sha256").unlink(missing_ok=True)
        for leftover in self.dir.glob(".step-*.tmp"):  # temporary files of writes a kill cut short
            leftover.unlink(missing_ok=True)
        return path

    def verify(self, path: Path) -> str | None:
        """Why ``path`` cannot be trusted, or None when it is whole."""
        digest_file = path.with_suffix(".sha256")
        if not digest_file.is_file():
            return "no digest beside it (the write did not finish)"
        if digest_file.read_text().strip() != _digest(path):
            return "its content does not match its digest (truncated or corrupted)"
        return None

    def load_latest(self, map_location="cpu") -> tuple[dict, Path] | None:
        """The newest whole checkpoint, reporting and skipping damaged ones; None if there is none."""
        for path in reversed(self.paths()):
            problem = self.verify(path)
            if problem is None:
                try:
                    return read_checkpoint(path, map_location), path
                except CheckpointError as error:  # a whole file that still fails to load is reported, not trusted
                    problem = f"it fails to load: {error}"
            log.warning("checkpoint %s is unusable: %s; trying the previous one", path, problem)
        return None
