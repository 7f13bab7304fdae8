"""Peak memory and time of one training step, multistage vs direct backprop, by batch size.

``python -m retrieval bench multistage [--quick] [--device cpu|cuda] [--image-size S] [--chunk-size C]``
writes results/benchmarks/multistage.{csv,md} (``--quick``: multistage_quick.{csv,md}).

Same model, images and loss (mAP_Q, the listwise loss multistage backprop was made for) for
both methods: a small CNN at a fixed image size, BatchNorm frozen (which multistage needs).
Direct backprop keeps the activations of the whole batch, so its peak grows linearly with the
batch; multistage keeps those of one chunk, so its peak stays flat as long as the chunk's
activations outweigh the loss on the batch's descriptors. Ratios are against the smallest batch
(memory) and against direct backprop at the same batch (time), all in one process.
"""
from __future__ import annotations

import argparse
import gc

import torch
from torch import nn

from benchmarks.common import RESULTS, environment_note, make_cpu_peaks_visible, median_seconds, peak_memory_bytes
from retrieval.engine.multistage import multistage_step
from retrieval.io import write_table
from retrieval.losses import LOSSES
from retrieval.models import build_model

BATCHES = (32, 64, 128, 256, 512)
QUICK_BATCHES = (32, 64, 128)
SAMPLES_PER_CLASS = 4
QUANTIZED_BINS = 20
MIB = 1 << 20
COLUMNS = ["method", "batch", "chunk", "peak_mib", "peak_vs_smallest_batch", "seconds_per_step", "time_vs_direct"]


def frozen_bn_model(width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("small_cnn", {"width": width}, "embedding", {"pooling": "gem", "dim": 128}, num_classes=0)
    return model.to(device).eval()  # eval: frozen BatchNorm statistics, as multistage requires


def measure(step, device: torch.device, repeats: int) -> tuple[float, float]:
    step()  # allocates the parameters' gradients, which both methods then reuse
    gc.collect()
    peak = peak_memory_bytes(step, device)
    return peak, median_seconds(step, repeats=repeats, warmup=0, device=device)


def steps(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk: int) -> dict:
    """The two ways of computing one step's gradients, as argument-less functions to measure."""
    loss = LOSSES.build("quantized_ap", num_bins=QUANTIZED_BINS)

    def criterion(outputs, y):
        return loss(outputs["embedding"], y), {}

    def direct():
        model.zero_grad(set_to_none=False)
        criterion(model(images), labels)[0].backward()

    def multistage():
        model.zero_grad(set_to_none=False)
        multistage_step(model, images, labels, criterion, chunk)

    return {"direct": direct, "multistage": multistage}


def run(batches, image_size: int, chunk: int, width: int, device: torch.device, repeats: int) -> list[dict]:
    model = frozen_bn_model(width, device)
    rows = []
    for batch in batches:
        generator = torch.Generator().manual_seed(batch)
        images = torch.randn(batch, 3, image_size, image_size, generator=generator).to(device)
        labels = (torch.arange(batch) // SAMPLES_PER_CLASS).to(device)
        for method, step in steps(model, images, labels, chunk).items():
            peak, seconds = measure(step, device, repeats)
            rows.append({"method": method, "batch": batch, "chunk": chunk if method == "multistage" else None,
                         "peak_mib": peak / MIB, "seconds_per_step": seconds})
            print(f"{method:>10} batch {batch:4d}: peak {peak / MIB:8.1f} MiB, {seconds:7.3f} s/step", flush=True)
    for row in rows:
        smallest = next(r for r in rows if r["method"] == row["method"])
        direct_row = next(r for r in rows if r["method"] == "direct" and r["batch"] == row["batch"])
        row["peak_vs_smallest_batch"] = row["peak_mib"] / smallest["peak_mib"] if smallest["peak_mib"] else None
        row["time_vs_direct"] = row["seconds_per_step"] / direct_row["seconds_per_step"]
    return rows


def growth(rows: list[dict], method: str) -> str:
    own = [r for r in rows if r["method"] == method]
    ratio = own[-1]["peak_vs_smallest_batch"]
    return f"{method}: peak at batch {own[-1]['batch']} is {ratio:.2f}x that at batch {own[0]['batch']}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m retrieval bench multistage", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help=f"batches {QUICK_BATCHES} at 32x32, one timing run")
    parser.add_argument("--image-size", type=int, default=None, help="square image side (default 64; quick 32)")
    parser.add_argument("--chunk-size", type=int, default=32, help="multistage chunk (default 32)")
    parser.add_argument("--width", type=int, default=32, help="small_cnn width (default 32)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        make_cpu_peaks_visible()
    batches = QUICK_BATCHES if args.quick else BATCHES
    image_size = args.image_size or (32 if args.quick else 64)
    rows = run(batches, image_size, args.chunk_size, args.width, device, repeats=1 if args.quick else 2)
    peak_kind = "allocator peak" if device.type == "cuda" else "resident-set high-water mark"
    notes = (
        f"One training step before the optimizer update (forward, loss, backward): small_cnn (width {args.width})"
        f" -> GeM -> FC 128 -> L2 on {image_size}x{image_size} images, mAP_Q loss ({QUANTIZED_BINS} bins), "
        f"{SAMPLES_PER_CLASS} images per class, BatchNorm frozen; multistage in chunks of {args.chunk_size}. "
        f"Peak = memory above what was allocated before the step ({peak_kind}); time = median seconds per step."
        f"\n\n{growth(rows, 'multistage')} (target: at most 1.3x); {growth(rows, 'direct')} "
        f"(linear growth would be {batches[-1] // batches[0]}x).\n\nMultistage recomputes every forward pass "
        f"once more (stage 3), so it should cost about 1.3-1.5x the time of direct backprop; timings on a "
        f"shared CPU are noisy.\n\n{environment_note(device)}"
    )
    stem = RESULTS / ("multistage_quick" if args.quick else "multistage")
    write_table(stem, rows, COLUMNS, title="Multistage backprop: peak memory and time per step", notes=notes)
    print(f"wrote {stem}.csv and {stem}.md")


if __name__ == "__main__":
    main()
