"""Timing and peak-memory measurement shared by every benchmark."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent.parent / "results" / "benchmarks"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def make_cpu_peaks_visible() -> bool:
    """Have glibc map every block of 64 KiB or more on its own and unmap it when freed
    (M_MMAP_THRESHOLD), so the resident-set high-water mark sees each measurement's allocations
    instead of heap pages kept from an earlier, larger one. True when glibc accepted it."""
    with contextlib.suppress(OSError):
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 64 * 1024))
    return False


def peak_memory_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Extra peak memory ``fn`` needs above what is allocated before it runs.

    On CUDA: the allocator's peak. On CPU: the process's resident-set high-water mark, which
    Linux lets a process reset (``clear_refs`` 5), minus the resident set before the call.
    """
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    with contextlib.suppress(OSError, AttributeError):  # hand free heap pages back, lest fn reuse them unseen
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    base = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - base) * 1024


def step_peaks(fn: Callable[[], object], device: torch.device | str = "cpu") -> tuple[int, int | None]:
    """Peak memory of the whole of ``fn``: (host bytes above the resident set before it, device bytes).

    Host: the resident-set high-water mark (reset through ``clear_refs``) minus the resident set before
    the call, so whatever ``fn`` reads or builds counts. Device (CUDA only, else None): the allocator's
    peak over the call, everything allocated included (weights, gradients, input).
    """
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    host = peak_memory_bytes(lambda: (fn(), torch.cuda.synchronize() if cuda else None))
    return host, torch.cuda.max_memory_allocated() if cuda else None


class RandomImages:
    """``count`` uint8 (size, size, 3) images of uniform noise, made when read, as a loader decodes files:
    a split's ``images`` that holds nothing in memory."""

    def __init__(self, count: int, size: int):
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.count:
            raise IndexError(index)
        return np.random.default_rng(index).integers(0, 256, (self.size, self.size, 3), dtype=np.uint8)


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1,
                   device: torch.device | str = "cpu") -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    cuda = torch.device(device).type == "cuda"
    times = []
    for i in range(warmup + repeats):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def environment_note(device: torch.device | str = "cpu") -> str:
    """One line naming what the numbers were measured on."""
    import os
    import platform

    where = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else platform.processor() or "cpu"
    return (f"Measured on {where} ({os.cpu_count()} CPUs visible, torch threads {torch.get_num_threads()}), "
            f"torch {torch.__version__}.")
