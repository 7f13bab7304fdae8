"""Training throughput (images/s) and peak memory for the papers' settings, on synthetic images.

    python -m retrieval bench train [--device cuda] [--quick] [--steps 5]

Settings: Smooth-AP / CGD style (ResNet-50, 224 px, batch 384, direct backprop) and listwise AP
(ResNet-101 at high resolution, GeM + FC 2048, mAP_Q, multistage backprop). Each runs in float32
and, on CUDA, in bf16 autocast with channels_last, so the speed-up of mixed precision is a ratio
measured in the same process. Results go to results/benchmarks/train.{csv,md}, and on a GPU also
to results/benchmarks/gpu.md with the device name.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from benchmarks.common import RESULTS, environment_note, make_cpu_peaks_visible, peak_memory_bytes
from retrieval.config import LossTerm
from retrieval.engine.criterion import Criterion
from retrieval.engine.multistage import multistage_step
from retrieval.engine.trainer import freeze_batchnorm
from retrieval.io import write_table
from retrieval.models import build_model


@dataclass
class Setting:
    name: str
    backbone: str
    head_args: dict
    loss: LossTerm
    image_size: int
    batch_size: int
    multistage_chunk: int | None = None


def settings(quick: bool) -> list[Setting]:
    if quick:
        return [
            Setting("resnet18-64px-b32 (quick)", "resnet18", {"pooling": "gem", "dim": 128},
                    LossTerm("smooth_ap", args={"temperature": 0.01}), 64, 32),
            Setting("resnet18-96px-b32-multistage (quick)", "resnet18", {"pooling": "gem", "dim": 256},
                    LossTerm("quantized_ap", args={"num_bins": 20}), 96, 32, multistage_chunk=8),
        ]
    return [
        Setting("smooth-ap/cgd: resnet50-224px-b384", "resnet50", {"pooling": "spoc", "dim": 512},
                LossTerm("smooth_ap", args={"temperature": 0.01}), 224, 384),
        Setting("listwise-ap: resnet101-800px-b256-multistage", "resnet101",
                {"pooling": "gem", "pooling_args": {"learn_p": True}, "dim": 2048},
                LossTerm("quantized_ap", args={"num_bins": 20}), 800, 256, multistage_chunk=32),
    ]


def run_setting(setting: Setting, device: torch.device, amp: bool, steps: int) -> dict:
    torch.manual_seed(0)
    classes = setting.batch_size // 4
    model = build_model(setting.backbone, {}, "embedding", setting.head_args, classes).to(device)
    criterion = Criterion({"loss": setting.loss}, classes, setting.head_args["dim"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    model.train()
    if setting.multistage_chunk:
        freeze_batchnorm(model)
    memory_format = torch.channels_last if amp else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    images = torch.randn(setting.batch_size, 3, setting.image_size, setting.image_size, device=device)
    images = images.contiguous(memory_format=memory_format)
    labels = torch.arange(classes, device=device).repeat_interleave(4)
    dtype = torch.bfloat16 if amp else None

    def step():
        optimizer.zero_grad(set_to_none=True)
        if setting.multistage_chunk:
            multistage_step(model, images, labels, criterion, setting.multistage_chunk, autocast=dtype)
        else:
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                outputs = model(images)
            criterion(outputs, labels)[0].backward()
        optimizer.step()

    peak = peak_memory_bytes(step, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    return {"setting": setting.name, "precision": "bf16 + channels_last" if amp else "float32",
            "batch": setting.batch_size, "image_size": setting.image_size,
            "seconds_per_step": round(seconds, 4), "images_per_second": round(setting.batch_size / seconds, 1),
            "peak_memory_mib": round(peak / 2**20, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="retrieval bench train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small backbones and images (CPU-friendly)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        make_cpu_peaks_visible()
    rows = []
    for setting in settings(args.quick):
        precisions = (False, True) if device.type == "cuda" else (False,)
        measured = [run_setting(setting, device, amp, args.steps) for amp in precisions]
        for row in measured:
            row["speedup_vs_float32"] = round(row["images_per_second"] / measured[0]["images_per_second"], 2)
            print(row)
        rows += measured
    columns = ["setting", "precision", "batch", "image_size", "seconds_per_step", "images_per_second",
               "speedup_vs_float32", "peak_memory_mib"]
    note = environment_note(device) + " Synthetic images already on the device (model throughput, no loader)."
    title = "Training throughput"
    write_table(RESULTS / ("train-quick" if args.quick else "train"), rows, columns, title, note)
    if device.type == "cuda":
        write_table(RESULTS / "gpu", rows, columns, f"GPU training throughput: {torch.cuda.get_device_name()}", note)


if __name__ == "__main__":
    main()
