"""Checkpoints and model files that are whole or refused, and a resume that skips damaged or foreign ones.

Every torch file a run writes and a later command loads (training checkpoints, ``model.pt``,
``best_model.pt``; a learned whitening is part of the model's state) is written with
:func:`save_verified`: the file atomically, then its SHA-256 beside it (``<stem>.sha256``).
:func:`read_checkpoint` checks that digest before unpickling anything, because ``torch.load``
does not check the archive's CRCs: flipped bits in the weights would otherwise load silently.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import torch

from retrieval.io import torch_save, write_text

log = logging.getLogger(__name__)
NAME = re.compile(r"^step-(\d{9})\.pt$")
STEP_KEY = "checkpoint_step"  # written by CheckpointStore.save: a model file placed among the checkpoints lacks it


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def digest_path(path: str | Path) -> Path:
    """Where the SHA-256 of ``path`` is kept: ``model.pt`` -> ``model.sha256``."""
    return Path(path).with_suffix(".sha256")


def write_digest(path: str | Path) -> Path:
    """Write the SHA-256 of the whole, already written file ``path`` beside it, atomically."""
    path = Path(path)
    write_text(digest_path(path), _digest(path) + "\n")
    return path


def save_verified(obj, path: str | Path) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically, then its digest: a kill between the two leaves a
    file without digest, which is refused, never a file that is trusted but incomplete."""
    torch_save(obj, path)
    return write_digest(path)


def digest_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be trusted, or None when its content matches the digest beside it."""
    digest_file = digest_path(path)
    if not digest_file.is_file():
        return f"no digest beside it ({digest_file.name}: the write did not finish, or another program wrote it)"
    if digest_file.read_text().strip() != _digest(Path(path)):
        return f"its content does not match its digest {digest_file.name} (tampered, truncated or corrupted)"
    return None


class CheckpointError(RuntimeError):
    """A checkpoint or model file that cannot be trusted: no or another digest, truncated, or more than tensors."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"cannot load {path}: {reason}")
        self.path, self.reason = path, reason


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """A checkpoint or model file whose digest matches, loaded with ``weights_only=True``.

    Raises FileNotFoundError for a missing file, :class:`CheckpointError` naming it otherwise.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path} does not exist")
    problem = digest_problem(path)
    if problem is not None:
        raise CheckpointError(path, problem)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a truncated, foreign or code-carrying file
        reason = next(iter(str(error).strip().splitlines()), "")
        raise CheckpointError(path, f"it fails to load: {type(error).__name__}: {reason} (a truncated or "
                                    "corrupted file, or one holding more than tensors and plain data, which is "
                                    "refused)") from None


def _flat(config: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: dict, expected: dict, limit: int = 5) -> list[str]:
    """The keys where two resolved configs (plain dicts) differ, as ``key: A in the checkpoint, B in this run``."""
    ours, theirs = _flat(expected), _flat(saved)
    keys = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k, "<absent>") != theirs.get(k, "<absent>"))
    lines = [f"{k}: {theirs.get(k, '<absent>')!r} in the checkpoint, {ours.get(k, '<absent>')!r} in this run"
             for k in keys[:limit]]
    return lines + ([f"and {len(keys) - limit} more"] if len(keys) > limit else [])


class CheckpointStore:
    """``run_dir/checkpoints/step-NNNNNNNNN.pt`` plus a ``.sha256`` beside each.

    A checkpoint is written with :func:`save_verified`: a checkpoint without a matching digest is
    not trusted. It records its step (and the trainer records the run's config in it), so a
    file that is whole but not this run's checkpoint (a ``model.pt`` copied here, the checkpoint
    of another config) is skipped too. The newest ``keep`` checkpoints are kept, so a damaged or
    foreign newest one falls back to the one before.
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
            save_verified({**state, STEP_KEY: global_step}, path)
        except OSError as error:
            whole = [p.name for p in self.paths() if p != path and self.verify(p) is None]
            raise OSError(error.errno, f"cannot write checkpoint {path}: {error.strerror}. The previous checkpoints "
                          f"in {self.dir} are whole ({', '.join(whole) or 'none yet'}); free space and run the "
                          "same command to resume") from None
        # A checkpoint newer than this one was rejected by the resume that led here: it is no fallback.
        older = [p for p in self.paths() if p <= path]
        for old in [p for p in self.paths() if p > path] + older[: -self.keep]:
            old.unlink(missing_ok=True)
            digest_path(old).unlink(missing_ok=True)
        for leftover in self.dir.glob(".step-*.tmp"):  # temporary files of writes a kill cut short
            leftover.unlink(missing_ok=True)
        return path

    def verify(self, path: Path) -> str | None:
        """Why ``path`` cannot be trusted, or None when it is whole."""
        return digest_problem(path)

    def foreign(self, saved: dict, path: Path, config: dict | None) -> str | None:
        """Why a whole checkpoint is not one of this run's, or None when it is."""
        if saved.get(STEP_KEY) != int(NAME.match(path.name).group(1)):
            return ("it is not a training checkpoint of this store (no step recorded, or another one than its "
                    "name says: a model file such as model.pt copied here?)")
        if config is not None and saved.get("config") != config:
            where = "; ".join(config_differences(saved.get("config") or {}, config))
            return f"it belongs to another run: its config differs from this run's ({where})"
        return None

    def load_latest(self, map_location="cpu", config: dict | None = None) -> tuple[dict, Path] | None:
        """The newest whole checkpoint of this run, reporting and skipping the others; None if there is none.

        ``config``: the run's resolved config (plain dict); a checkpoint recording another is skipped.
        Every key must match, as :meth:`retrieval.engine.run_dir.RunDir.claim` requires of the run directory.
        """
        for path in reversed(self.paths()):
            try:
                saved = read_checkpoint(path, map_location)
                problem = self.foreign(saved, path, config)
                if problem is None:
                    return saved, path
            except CheckpointError as error:
                problem = error.reason
            log.warning("checkpoint %s is unusable: %s; trying the previous one", path, problem)
        return None
