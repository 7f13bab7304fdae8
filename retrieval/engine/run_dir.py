"""A run directory: resolved config, environment record, log, metrics, checkpoints."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from retrieval.config import Config, ConfigError, config_to_dict, dump_config, load_config
from retrieval.io import csv_text, write_json, write_text

CONFIG, METRICS, LOG, ENVIRONMENT = "config.yaml", "metrics.json", "log.csv", "environment.json"
LOCK = ".lock"  # holds an OS lock (flock) while a process owns the run; the kernel drops it when that process dies


class RunDirError(RuntimeError):
    """A run directory that cannot be used: not a folder, not writable, or owned by another running process."""


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+uncommitted" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """What a result depends on beyond its config: library versions, device and commit."""
    import numpy
    import torch
    import torchvision

    return {
        "python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
        "torchvision": torchvision.__version__, "numpy": numpy.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "commit": git_commit(), "command": " ".join(sys.argv),
    }


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock: int | None = None

    @contextlib.contextmanager
    def owned(self):
        """Make the folder, check that it is writable and lock it for this process until the block ends.

        Raises :class:`RunDirError` (one line naming the path and the fix) before anything is written.
        """
        self._make()
        self._check_writable()
        self._acquire()
        try:
            yield self
        finally:
            os.close(self._lock)
            self._lock = None

    def _make(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"the run directory {self.path} is a file, not a folder; choose another --output")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            blocking = next((p for p in reversed(self.path.parents) if p.exists() and not p.is_dir()), self.path)
            raise RunDirError(f"cannot make the run directory {self.path}: {blocking} is a file, not a folder; "
                              "choose another --output") from None
        except OSError as error:
            raise RunDirError(f"cannot make the run directory {self.path}: {error.strerror}; "
                              "choose another --output") from None
        for name in (CONFIG, METRICS, LOG, ENVIRONMENT):
            if (self.path / name).is_dir():
                raise RunDirError(f"{self.path / name} is a folder where the run keeps its {name} file; remove "
                                  "it or choose another --output")

    def _check_writable(self) -> None:
        """Create and remove a probe file, so that a read-only or full location fails now, not after an epoch."""
        try:
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=".write-probe-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise RunDirError(f"cannot write in the run directory {self.path}: {error.strerror}; "
                              "choose another --output") from None

    def _acquire(self) -> None:
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunDirError(f"the run directory {self.path} is in use by another process (pid {owner}); wait "
                              "for it to end, or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock = fd

    def claim(self, cfg: Config) -> bool:
        """Record ``cfg`` here; True when the directory already held this run (a resume).

        A directory holding a different config is refused: resuming it would mix two runs.
        """
        existing = self.path / CONFIG
        if existing.is_file():
            previous = load_config(existing)
            if config_to_dict(previous) != config_to_dict(cfg):
                raise ConfigError(f"{self.path} holds a run with a different config ({existing}); "
                                  "use another --output, or delete that directory to start over")
            if not (self.path / ENVIRONMENT).is_file():  # killed between writing the config and this record
                write_json(self.path / ENVIRONMENT, environment())
            return True
        self.path.mkdir(parents=True, exist_ok=True)
        write_text(existing, dump_config(cfg))
        write_json(self.path / ENVIRONMENT, environment())
        return False

    def finished_metrics(self) -> dict | None:
        path = self.path / METRICS
        return json.loads(path.read_text()) if path.is_file() else None

    def write_log(self, history: list[dict]) -> None:
        columns: list[str] = []
        for row in history:
            columns += [key for key in row if key not in columns]
        write_text(self.path / LOG, csv_text(history, columns))

    def write_metrics(self, metrics: dict) -> None:
        write_json(self.path / METRICS, metrics)
