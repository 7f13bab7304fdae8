"""What a person reads while a run trains: one summary line per epoch on stderr (progress bars or not), and,
with ``train.tensorboard=true``, TensorBoard event files in the run's ``tensorboard/`` folder beside log.csv.

TensorBoard is optional and not in requirements.txt (it pulls in grpcio and its own data server, tens of MB):
``pip install tensorboard``, then ``tensorboard --logdir runs/``.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def summary_line(row: dict, epochs: int) -> str:
    """``epoch 3/6  loss 0.2311  lr 1e-03  12.3 s  recall@1 0.9531  map 0.6311`` (metrics when evaluated)."""
    parts = [f"epoch {row['epoch']}/{epochs}" + ("  (untrained)" if row["epoch"] == 0 else "")]
    if "loss" in row:
        parts.append(f"loss {row['loss']:.4f}")
    if "lr" in row:
        parts.append(f"lr {row['lr']:.3g}")
    if "seconds" in row:
        parts.append(f"{row['seconds']:.1f} s")
    parts += [f"{key} {value:.4f}" for key, value in row.items()
              if key not in ("epoch", "loss", "lr", "seconds") and not key.startswith("loss/")
              and isinstance(value, (int, float))]
    return "  ".join(parts)


class EpochLog:
    """Writes each log row as a line on ``stream`` and, when ``tensorboard``, as scalars at step = epoch."""

    def __init__(self, run_path: str | Path, epochs: int, tensorboard: bool = False, stream=None):
        self.epochs, self.stream = epochs, stream or sys.stderr
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(Path(run_path) / TENSORBOARD_DIR))

    def write(self, row: dict) -> None:
        print(summary_line(row, self.epochs), file=self.stream, flush=True)
        if self.writer is not None:
            for key, value in row.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, global_step=row["epoch"])
            self.writer.flush()
