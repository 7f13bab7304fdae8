"""Forward+backward time and peak memory of the AP losses, against the naive broadcast formulations.

``python -m retrieval bench losses [--quick] [--device cpu|cuda] [--max-naive-gib G]`` writes
results/benchmarks/losses.{csv,md} (``--quick``: losses_quick.{csv,md}, batches 64-384 only).

The naive formulations below are what the published code does in spirit: Smooth-AP with every
(query, i, j) sigmoid of the batch at once (B x B x B), mAP_Q and FastAP with every score against every
bin (B x bins x B; FastAP's is pytorch-metric-learning's). They live here, not in the library, as baselines
run in the same process; each is checked against the library's value and gradient before it is timed.
A naive run whose memory, extrapolated from the previous batch size, would not fit is skipped and says so.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import FastAPLoss as MetricLearningFastAP

from benchmarks.common import RESULTS, environment_note, make_cpu_peaks_visible, median_seconds, peak_memory_bytes
from retrieval.io import write_table
from retrieval.losses.blackbox_ap import BlackBoxAPLoss
from retrieval.losses.fastap import FastAPLoss
from retrieval.losses.quantized_ap import QuantizedAPLoss
from retrieval.losses.smooth_ap import SmoothAPLoss

BATCHES = (64, 224, 384, 1024, 4096)
QUICK_BATCHES = (64, 224, 384)
SAMPLES_PER_CLASS = 4
DIM = 512
SMOOTH_AP_TEMPERATURE = 0.01
QUANTIZED_BINS = 20
FASTAP_BINS = 10
MIB = 1 << 20
GIB = 1 << 30
# Blocks under 64 KiB come from heap pages the process already holds, so smaller CPU peaks are not resolved.
RESOLVED_CPU_PEAK = 1 * MIB
COLUMNS = ["loss", "implementation", "batch", "forward_backward_s", "peak_mib", "speedup_vs_naive",
           "memory_vs_naive", "note"]


def naive_smooth_ap_loss(embeddings, labels, temperature=SMOOTH_AP_TEMPERATURE):
    """1 - mean Smooth-AP, query kept in its retrieval set (the authors' convention), all B^3 sigmoids at once."""
    scores = embeddings @ embeddings.T
    relevance = (labels.unsqueeze(0) == labels.unsqueeze(1)).to(scores.dtype)
    not_self = 1 - torch.eye(len(labels), dtype=scores.dtype, device=scores.device)
    sigmoids = torch.sigmoid((scores.unsqueeze(1) - scores.unsqueeze(2)) / temperature) * not_self
    rank_all = 1 + sigmoids.sum(dim=2)
    rank_positive = 1 + (sigmoids * relevance.unsqueeze(1)).sum(dim=2)
    ap = (relevance * rank_positive / rank_all).sum(dim=1) / relevance.sum(dim=1)
    return 1 - ap.mean()


def naive_quantized_ap_loss(embeddings, labels, num_bins=QUANTIZED_BINS, low=-1.0, high=1.0):
    """1 - mean AP_Q with the full (B, bins, B-1) triangle assignment (clamping the scores saturates the ends)."""
    n = len(labels)
    keep = ~torch.eye(n, dtype=torch.bool, device=embeddings.device)
    scores = (embeddings @ embeddings.T)[keep].view(n, n - 1).clamp(low, high)
    relevance = (labels.unsqueeze(0) == labels.unsqueeze(1))[keep].view(n, n - 1).to(scores.dtype)
    delta = (high - low) / (num_bins - 1)
    centres = high - delta * torch.arange(num_bins, dtype=scores.dtype, device=scores.device)
    weights = (1 - (scores.unsqueeze(1) - centres.view(1, -1, 1)).abs() / delta).clamp_min(0)
    counts = weights.sum(dim=2)
    positives = (weights * relevance.unsqueeze(1)).sum(dim=2)
    precision = positives.cumsum(dim=1) / counts.cumsum(dim=1).clamp_min(1e-16)
    ap = (precision * positives).sum(dim=1) / relevance.sum(dim=1)
    return 1 - ap[relevance.sum(dim=1) > 0].mean()


@dataclass
class Case:
    loss: str
    ours: Callable
    naive: Callable | None = None
    naive_name: str = ""
    naive_elements: Callable[[int], int] | None = None  # size of the naive formulation's largest tensors


def cases() -> list[Case]:
    metric_learning_fastap = MetricLearningFastAP(num_bins=FASTAP_BINS)
    return [
        Case("smooth_ap", SmoothAPLoss(SMOOTH_AP_TEMPERATURE), naive_smooth_ap_loss, "naive B x B x B",
             lambda b: b**3),
        Case(f"quantized_ap ({QUANTIZED_BINS} bins)", QuantizedAPLoss(QUANTIZED_BINS), naive_quantized_ap_loss,
             "naive B x bins x B", lambda b: b * (b - 1) * QUANTIZED_BINS),
        Case(f"quantized_ap tie-aware ({QUANTIZED_BINS} bins)", QuantizedAPLoss(QUANTIZED_BINS, tie_aware=True)),
        Case(f"fastap ({FASTAP_BINS} bins)", FastAPLoss(FASTAP_BINS), metric_learning_fastap,
             "pytorch-metric-learning B x B x bins", lambda b: b * b * (FASTAP_BINS + 1)),
        Case("blackbox_ap", BlackBoxAPLoss()),
    ]


def make_batch(batch: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch // SAMPLES_PER_CLASS).repeat_interleave(SAMPLES_PER_CLASS)
    labels = labels[torch.randperm(len(labels), generator=generator)]
    embeddings = F.normalize(torch.randn(len(labels), DIM, generator=generator), dim=1)
    return embeddings.to(device), labels.to(device)


def check_naive_against_ours(case: Case, device: torch.device) -> None:
    embeddings, labels = make_batch(64, device, seed=1)
    values, gradients = [], []
    for loss in (case.ours, case.naive):
        # differentiated before normalisation: pytorch-metric-learning normalises again inside
        raw = embeddings.double().requires_grad_()
        value = loss(F.normalize(raw, dim=1), labels)
        values.append(value.item())
        gradients.append(torch.autograd.grad(value, raw)[0])
    if abs(values[0] - values[1]) > 1e-6 or not torch.allclose(gradients[0], gradients[1], atol=1e-6, rtol=0):
        raise AssertionError(f"{case.loss}: the naive formulation disagrees with ours ({values[0]} vs {values[1]})")


def measure(loss, embeddings, labels, repeats: int, device: torch.device) -> tuple[float, int]:
    def step():
        x = embeddings.detach().requires_grad_()
        loss(x, labels).backward()

    seconds = median_seconds(step, repeats=repeats, warmup=1, device=device)
    return seconds, peak_memory_bytes(step, device)


def available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("MemAvailable not in /proc/meminfo")


def run_case(case: Case, batches, device, max_naive_bytes: int, repeats: int) -> list[dict]:
    rows, bytes_per_element = [], None
    for batch in batches:
        embeddings, labels = make_batch(batch, device)
        ours_seconds, ours_peak = measure(case.ours, embeddings, labels, repeats if batch < 4096 else 1, device)
        ours = {"loss": case.loss, "implementation": "ours", "batch": batch, "forward_backward_s": ours_seconds,
                "peak_mib": ours_peak / MIB}
        rows.append(ours)
        print(f"{case.loss:32s} ours   B={batch:5d} {ours_seconds:9.4f} s {ours_peak / MIB:10.1f} MiB", flush=True)
        if case.naive is None:
            continue
        naive = {"loss": case.loss, "implementation": case.naive_name, "batch": batch}
        rows.append(naive)
        limit = min(max_naive_bytes, int(0.6 * available_bytes(device)))
        predicted = bytes_per_element * case.naive_elements(batch) if bytes_per_element else 0
        if predicted > limit:
            naive["note"] = f"skipped: needs about {predicted / GIB:.1f} GiB, limit {limit / GIB:.1f} GiB"
            print(f"{case.loss:32s} naive  B={batch:5d} {naive['note']}", flush=True)
            continue
        naive_seconds, naive_peak = measure(case.naive, embeddings, labels, repeats if batch < 1024 else 1, device)
        bytes_per_element = naive_peak / case.naive_elements(batch)
        naive.update(forward_backward_s=naive_seconds, peak_mib=naive_peak / MIB)
        ours["speedup_vs_naive"] = naive_seconds / ours_seconds
        if device.type == "cpu" and ours_peak < RESOLVED_CPU_PEAK:
            ours["note"] = "peak below what the resident set resolves: no memory ratio"
        else:
            ours["memory_vs_naive"] = ours_peak / naive_peak
        print(f"{case.loss:32s} naive  B={batch:5d} {naive_seconds:9.4f} s {naive_peak / MIB:10.1f} MiB   "
              f"speed-up {ours['speedup_vs_naive']:.1f}x, memory {ours_peak / max(naive_peak, 1):.4f} of naive",
              flush=True)
    return rows


def target_lines(rows: list[dict]) -> list[str]:
    """The issue's targets, each with what this run measured."""
    def find(loss_prefix, implementation, batch):
        return next((r for r in rows if r["loss"].startswith(loss_prefix) and r["implementation"] == implementation
                     and r["batch"] == batch), None)

    def check(text, row, key, passes):
        if row is None or row.get(key) is None:
            return f"- {text}: not measured in this run"
        return f"- {text}: {row[key]:.4g} ({'met' if passes(row[key]) else 'NOT met'})"

    smooth_384, smooth_4096 = find("smooth_ap", "ours", 384), find("smooth_ap", "ours", 4096)
    quantized_4096 = find("quantized_ap (", "ours", 4096)
    return [
        check("Smooth-AP, B=384, peak memory as a fraction of naive (target <= 0.1)", smooth_384, "memory_vs_naive",
              lambda v: v <= 0.1),
        check("Smooth-AP, B=384, speed-up over naive (target >= 5)", smooth_384, "speedup_vs_naive", lambda v: v >= 5),
        check("Smooth-AP, B=4096, seconds for forward+backward (target: completes)", smooth_4096,
              "forward_backward_s", lambda v: v > 0),
        check(f"mAP_Q, B=4096, {QUANTIZED_BINS} bins, peak memory as a fraction of naive (target <= 0.25)",
              quantized_4096, "memory_vs_naive", lambda v: v <= 0.25),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m retrieval bench losses", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"batches {QUICK_BATCHES} only, fewer repeats")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("--max-naive-gib", type=float, default=12.0,
                        help="skip a naive run whose extrapolated peak memory exceeds this (default: 12)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    batches, repeats = (QUICK_BATCHES, 2) if args.quick else (BATCHES, 3)
    visible = device.type == "cpu" and make_cpu_peaks_visible()

    rows = []
    for case in cases():
        if case.naive is not None:
            check_naive_against_ours(case, device)
        rows += run_case(case, batches, device, int(args.max_naive_gib * GIB), repeats)

    targets = target_lines(rows)
    print("\n".join(["", "Targets:", *targets]))
    notes = "\n".join([
        f"Forward+backward of each loss from a (B, {DIM}) batch of L2-normalised embeddings, "
        f"{SAMPLES_PER_CLASS} samples per class; median of {repeats} runs after a warm-up (one run at B=4096). "
        "Peak memory: the extra memory one forward+backward needs ("
        + ("CUDA allocator peak" if device.type == "cuda" else "resident-set high-water mark")
        + "). speedup_vs_naive = naive seconds / ours; memory_vs_naive = ours peak / naive peak, both measured "
        "in the same process. Each naive formulation was checked equal to ours (value and gradient, float64, "
        "B=64) before timing.",
        "glibc was told to map every block of 64 KiB or more separately, so freed memory leaves the resident "
        "set and each peak is seen." if visible else "",
        environment_note(device),
        "",
        "Targets:",
        *targets,
    ])
    stem = RESULTS / ("losses_quick" if args.quick else "losses")
    write_table(stem, rows, COLUMNS, title="AP losses: time and peak memory against naive formulations",
                notes=notes)
    print(f"wrote {stem}.csv and {stem}.md")


if __name__ == "__main__":
    main()
