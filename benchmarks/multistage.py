"""Peak memory and time of one whole multistage training step, reading the images included, by batch size.

``python -m retrieval bench multistage [--quick] [--device cpu|cuda] [--backbone NAME] [--width W]
[--image-size S] [--chunk-size C] [--batches B ...]`` writes results/benchmarks/multistage.{csv,md}
(``--quick``: multistage_quick.{csv,md}). The listwise AP paper's setting on a GPU:
``--device cuda --backbone resnet101 --image-size 800 --chunk-size 8``.
``python -m retrieval bench multistage --activations [--backbone resnet101] [--image-size 800]`` prints the
float32 activations one image keeps for the backward pass (what a chunk needs per image), without a GPU.

A step is what the trainer does with ``train.multistage``: the batch's keys in, each chunk of images
decoded and augmented when it is needed (twice: stages 1 and 3), the mAP_Q loss (the loss multistage
backprop was made for) on all B outputs, the gradients. Memory is the peak of the whole step: host
(the process's resident-set high-water mark, above what it held before the step, when no image of the
batch existed yet) and, on CUDA, the device allocator's peak (all of it: weights, gradients, input).
Only the B x D outputs, their gradients and the loss on them may grow with B; the loss alone (mAP_Q on
B random outputs: its B x B scores) is measured separately and shown beside the step. "chunked plain"
is forward + backward of the same images in the same chunks with the loss on each chunk: one chunk's
training, the floor of both memory and time (ratios are against it at the same B). At B = chunk,
stage 3 runs two half chunks (its partition is shifted by half a chunk to check the two passes agree).
"""
from __future__ import annotations

import argparse
import gc
import time

import numpy as np
import torch
from torch import nn

from benchmarks.common import RESULTS, RandomImages, environment_note, make_cpu_peaks_visible, step_peaks
from retrieval.data.loading import ChunkedBatch, ImageDataset
from retrieval.data.split import Split
from retrieval.data.transforms import TransformConfig, build_transform
from retrieval.engine.multistage import multistage_step
from retrieval.io import write_table
from retrieval.losses import LOSSES
from retrieval.models import build_model

BATCHES = (32, 256, 1024, 4096)
QUICK_BATCHES = (32, 256)
SAMPLES_PER_CLASS = 4
QUANTIZED_BINS = 20  # the listwise AP paper's M
DIM = 128
MIB = 1 << 20
COLUMNS = ["method", "batch", "chunk", "image_size", "peak_host_mib", "host_vs_chunked_plain",
           "loss_only_host_mib", "peak_device_mib", "seconds_per_step", "images_per_second",
           "time_vs_chunked_plain"]


def frozen_bn_model(backbone: str, width: int, device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    args = {"width": width} if backbone == "small_cnn" else {}
    model = build_model(backbone, args, "embedding", {"pooling": "gem", "pooling_args": {"learn_p": True},
                                                      "dim": DIM}, num_classes=0)
    return model.to(device).eval()  # eval: frozen BatchNorm statistics, as multistage requires


def image_source(batch: int, image_size: int) -> ImageDataset:
    """``batch`` images read (generated) and augmented when asked, as a loader decodes files."""
    labels = np.arange(batch) // SAMPLES_PER_CLASS
    split = Split("bench", labels=labels, images=RandomImages(batch, image_size + image_size // 8))
    return ImageDataset(split, build_transform(TransformConfig(crop=image_size, random_crop=True, flip=True)))


def quantized_ap(outputs, labels):
    return LOSSES.build("quantized_ap", num_bins=QUANTIZED_BINS)(outputs["embedding"], labels), {}


def steps(model: nn.Module, dataset: ImageDataset, chunk: int, device: torch.device) -> dict:
    """The step and its time baseline, as argument-less functions to measure."""
    keys = [(i, 1000 + i) for i in range(len(dataset))]
    pin = device.type == "cuda"

    def multistage():
        model.zero_grad(set_to_none=False)
        multistage_step(model, ChunkedBatch(dataset, keys, pin_memory=pin), None, quantized_ap, chunk)

    def chunked_plain():
        model.zero_grad(set_to_none=False)
        source = ChunkedBatch(dataset, keys, pin_memory=pin)
        for images, labels, _ in source.read([slice(i, i + chunk) for i in range(0, len(keys), chunk)]):
            quantized_ap(model(images.to(device, non_blocking=True)), labels.to(device))[0].backward()

    return {"multistage": multistage, "chunked plain": chunked_plain}


def loss_only_peak(batch: int, device: torch.device) -> float:
    """Host peak of mAP_Q's forward and backward on B random outputs: what the loss itself needs."""
    outputs = nn.functional.normalize(torch.randn(batch, DIM, device=device), dim=1).requires_grad_()
    labels = (torch.arange(batch) // SAMPLES_PER_CLASS).to(device)
    return step_peaks(lambda: quantized_ap({"embedding": outputs}, labels)[0].backward(), device)[0]


def timed(step, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(batches, image_size: int, chunk: int, backbone: str, width: int, device: torch.device) -> list[dict]:
    model = frozen_bn_model(backbone, width, device)
    steps(model, image_source(chunk, image_size), chunk, device)["multistage"]()  # gradients allocated once
    rows = []
    for batch in batches:
        dataset = image_source(batch, image_size)
        loss_peak = loss_only_peak(batch, device)
        for method, step in steps(model, dataset, chunk, device).items():
            gc.collect()
            start = time.perf_counter()
            host, device_peak = step_peaks(step, device)
            seconds = time.perf_counter() - start if device.type == "cpu" else timed(step, device)
            rows.append({"method": method, "batch": batch, "chunk": chunk, "image_size": image_size,
                         "peak_host_mib": host / MIB, "loss_only_host_mib": loss_peak / MIB,
                         "peak_device_mib": None if device_peak is None else device_peak / MIB,
                         "seconds_per_step": seconds, "images_per_second": batch / seconds})
            print(f"{method:>13} B {batch:5d}: host {host / MIB:8.1f} MiB (loss alone {loss_peak / MIB:7.1f}), "
                  f"device {'-' if device_peak is None else f'{device_peak / MIB:.1f} MiB'}, {seconds:7.2f} s",
                  flush=True)
    for row in rows:
        plain = next(r for r in rows if r["method"] == "chunked plain" and r["batch"] == row["batch"])
        row["host_vs_chunked_plain"] = row["peak_host_mib"] / plain["peak_host_mib"]
        row["time_vs_chunked_plain"] = row["seconds_per_step"] / plain["seconds_per_step"]
    return rows


def summary(rows: list[dict], image_size: int) -> str:
    """What grows with B: each multistage peak above the larger of one chunk's training and the loss alone."""
    own = [r for r in rows if r["method"] == "multistage"]
    plain = {r["batch"]: r["peak_host_mib"] for r in rows if r["method"] == "chunked plain"}
    above = ", ".join(f"B = {r['batch']}: {r['peak_host_mib']:.0f} MiB = "
                      f"{r['peak_host_mib'] - max(plain[r['batch']], r['loss_only_host_mib']):+.0f} MiB above "
                      f"max(one chunk's training {plain[r['batch']]:.0f}, the loss alone "
                      f"{r['loss_only_host_mib']:.0f})" for r in own)
    last = own[-1]
    whole_input = last["batch"] * 3 * image_size * image_size * 4 / MIB
    return (f"Multistage host peaks: {above}. The B x {DIM} outputs and their gradients are "
            f"{2 * last['batch'] * DIM * 4 / MIB:.0f} MiB at B = {last['batch']}; the float32 input of that whole "
            f"batch alone would be {whole_input:.0f} MiB, and none of it is ever held. At large B the listwise "
            f"loss's own B x B scores set the peak. Multistage takes {last['time_vs_chunked_plain']:.2f}x the time "
            f"of plain chunked forward + backward at B = {last['batch']} (one extra forward pass, and every image "
            "decoded twice; timings on this shared, loaded CPU are noisy).\n\n")

def saved_activations_per_image(backbone: str, image_size: int, probe_size: int = 224) -> int:
    """Bytes of the activations autograd keeps for backward per image (float32, BatchNorm frozen), measured at
    ``probe_size`` and scaled by the pixel count, which is exact when both sides are multiples of 32 (a
    ResNet's stride). The backward pass adds a few layers' gradients on top."""
    model = frozen_bn_model(backbone, 16, torch.device("cpu"))
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    kept: dict[int, int] = {}

    def pack(tensor):
        kept[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.zeros(1, 3, probe_size, probe_size))
    per_image = sum(size for pointer, size in kept.items() if pointer not in weights)
    return round(per_image * (image_size / probe_size) ** 2)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m retrieval bench multistage", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--quick", action="store_true", help=f"batches {QUICK_BATCHES} at 32x32")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help=f"batch sizes (default {BATCHES})")
    parser.add_argument("--image-size", type=int, default=None, help="square crop side (default 64; quick 32)")
    parser.add_argument("--chunk-size", type=int, default=32, help="multistage chunk (default 32)")
    parser.add_argument("--backbone", default="small_cnn", help="small_cnn (default), resnet50, resnet101")
    parser.add_argument("--width", type=int, default=16, help="small_cnn width (default 16)")
    parser.add_argument("--activations", action="store_true",
                        help="print the activations one image keeps for backward (--backbone, --image-size) and stop")
    args = parser.parse_args(argv)
    if args.activations:
        size = args.image_size or 800
        print(f"{args.backbone} at {size}x{size}, float32: "
              f"{saved_activations_per_image(args.backbone, size) / 2**30:.2f} GiB of activations kept per image")
        return
    device = torch.device(args.device)
    make_cpu_peaks_visible()
    batches = args.batches or (QUICK_BATCHES if args.quick else BATCHES)
    image_size = args.image_size or (32 if args.quick else 64)
    rows = run(batches, image_size, args.chunk_size, args.backbone, args.width, device)
    model = f"small_cnn (width {args.width})" if args.backbone == "small_cnn" else args.backbone
    notes = (
        f"One whole training step before the optimizer update: {model} -> GeM (learned p) -> FC {DIM} -> L2 on "
        f"{image_size}x{image_size} random crops of generated images decoded per chunk, mAP_Q ({QUANTIZED_BINS} "
        f"bins), {SAMPLES_PER_CLASS} images per class, BatchNorm frozen, chunks of {args.chunk_size}, one step per "
        f"row (the first, smallest step warms up). Host peak: resident-set high-water mark above the resident "
        f"set before the step; device peak: torch.cuda.max_memory_allocated over the step (CUDA only). "
        f"The listwise AP paper trains at 800 px with ResNet-101; this CPU run uses {image_size} px and a small "
        f"CNN so that B = {batches[-1]} takes seconds.\n\n{summary(rows, image_size)}"
        f"{environment_note(device)}")
    stem = RESULTS / ("multistage_quick" if args.quick else "multistage")
    write_table(stem, rows, COLUMNS, title="Multistage backprop: whole-step peak memory and time by batch size",
                notes=notes)
    print(f"wrote {stem}.csv and {stem}.md")


if __name__ == "__main__":
    main()
