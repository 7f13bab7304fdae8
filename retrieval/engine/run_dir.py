"""A run directory: resolved config, environment record, log, metrics, checkpoints."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

from retrieval.config import Config, ConfigError, config_to_dict, dump_config, load_config
from retrieval.io import csv_text, write_json, write_text

CONFIG, METRICS, LOG, ENVIRONMENT = "config.yaml", "metrics.json", "log.csv", "environment.json"


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
