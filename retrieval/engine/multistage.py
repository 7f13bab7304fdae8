"""Multistage backpropagation (Revaud et al., ICCV 2019, Sec. 4.3): a batch larger than memory.

A listwise loss needs every output of the batch at once, but the activations of only a chunk
of images fit in memory. So one step runs in three stages:

1. read and forward the batch chunk by chunk without autograd, keeping only the head's outputs;
2. compute the loss on those outputs (as leaf tensors) and backpropagate it to them, which
   gives d loss / d output for every output of every image;
3. read and forward each chunk again, now with autograd, and backpropagate its slice of those
   gradients.

The images themselves are read per chunk in both stages (:class:`ChunkSource`), so host and
device memory hold one chunk of images and its activations at a time: only the B x D outputs
and their gradients grow with the batch.

Parameter gradients accumulate over the chunks to exactly those of backpropagating the loss
through the whole batch at once, provided both forward passes compute the same per-image
function. This is checked as a property, at no extra forward pass: stage 3 compares every
recomputed output with its stage-1 value and raises :class:`StagesDisagree` when they differ.

- A forward pass that draws no random numbers is recomputed in a partition shifted by half a
  chunk, so an output that depends on the other images of its chunk (BatchNorm normalising with
  the chunk's statistics: training mode, or ``track_running_stats=False``) differs and is caught.
- A forward pass that draws random numbers (dropout, also ``F.dropout``) is recomputed in the
  same chunks, each from the random-number state its first pass started from, so the same
  masks are drawn again; afterwards the state is where the first pass left it. Such a pass cannot
  also be re-partitioned, so BatchNorm with batch statistics is then refused by type.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Protocol

import torch
from torch import nn

Outputs = dict[str, torch.Tensor | list[torch.Tensor]]
Key = tuple[str, int | None]

#: Largest relative difference between an image's output in the two passes, by the autocast dtype
#: (None: full precision). Results vary with the chunk's size through the kernels chosen: ~1e-6 in
#: float32, up to ~1e-3 where GPUs convolve float32 in TF32; a chunk-dependent function differs by O(1).
TOLERANCE = {None: 1e-2, torch.bfloat16: 5e-2, torch.float16: 2e-2}


class StagesDisagree(ValueError):
    """The recomputed pass (stage 3) gave other outputs than the first pass (stage 1)."""


class ChunkSource(Protocol):
    """The images of one batch, read a chunk at a time.

    ``read(slices)`` yields, for each slice of item positions in turn, ``(images, labels,
    positions)``: the readable images of those items (N, 3, H, W) on any device, their labels (N,)
    and their positions in the batch (N,); an unreadable image is left out. ``subset(positions)``
    is the source of those items only, in that order.
    """

    def __len__(self) -> int: ...

    def read(self, slices: list[slice]) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]: ...

    def subset(self, positions: torch.Tensor) -> ChunkSource: ...


class TensorChunks:
    """A :class:`ChunkSource` over a batch already in memory, (B, 3, H, W) images and (B,) labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def read(self, slices):
        for chunk in slices:
            positions = torch.arange(len(self))[chunk]
            yield self.images[chunk], self.labels[chunk], positions

    def subset(self, positions):
        return TensorChunks(self.images[positions], self.labels[positions.to(self.labels.device)])


def partition(count: int, chunk_size: int, first: int | None = None) -> list[slice]:
    """``count`` positions in consecutive slices of ``chunk_size``, the first one ``first`` long."""
    first = chunk_size if first is None else first
    bounds = [0, *range(min(first, count), count, chunk_size), count]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def check_batch_statistics(model: nn.Module) -> None:
    """Raise if a BatchNorm normalises with the chunk's own statistics (a stochastic pass cannot be re-partitioned
    to show it)."""
    offending = [name or type(module).__name__ for name, module in model.named_modules()
                 if isinstance(module, nn.modules.batchnorm._BatchNorm)
                 and (module.training or not module.track_running_stats)]
    if offending:
        raise StagesDisagree(
            "multistage backprop computes each image's output in a chunk, so no output may depend on the other "
            f"images; these BatchNorm layers normalise with the chunk's statistics: {', '.join(offending[:8])}"
            f"{' ...' if len(offending) > 8 else ''}. Freeze their statistics (train.freeze_bn=true) or train "
            "without multistage.")


def _tensor_outputs(outputs: dict) -> Outputs:
    """The outputs a loss can differentiate: tensors and lists of tensors."""
    return {k: v for k, v in outputs.items()
            if isinstance(v, torch.Tensor) or (isinstance(v, (list, tuple)) and all(isinstance(t, torch.Tensor)
                                                                                     for t in v))}


def _flatten(outputs: Outputs) -> list[tuple[Key, torch.Tensor]]:
    """``[((key, position in list or None), tensor), ...]`` in a fixed order."""
    flat = []
    for key in sorted(outputs):
        value = outputs[key]
        if isinstance(value, torch.Tensor):
            flat.append(((key, None), value))
        else:
            flat.extend(((key, i), t) for i, t in enumerate(value))
    return flat


def _unflatten(flat: dict[Key, torch.Tensor]) -> Outputs:
    outputs: Outputs = {}
    for (key, position), tensor in flat.items():
        if position is None:
            outputs[key] = tensor
        else:
            outputs.setdefault(key, []).append(tensor)
    return outputs


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


class _RandomState:
    """The random-number state a forward pass draws from: the CPU generator and, on a GPU, that device's."""

    def __init__(self, device: torch.device):
        self.cuda = device if device.type == "cuda" else None

    def get(self) -> tuple:
        return (torch.get_rng_state(), torch.cuda.get_rng_state(self.cuda) if self.cuda is not None else None)

    def set(self, state: tuple) -> None:
        torch.set_rng_state(state[0])
        if self.cuda is not None:
            torch.cuda.set_rng_state(state[1], self.cuda)

    @staticmethod
    def same(a: tuple, b: tuple) -> bool:
        return all(x is None or torch.equal(x, y) for x, y in zip(a, b))


def _largest_difference(recomputed: torch.Tensor, first: torch.Tensor) -> float:
    """max over images of |recomputed - first| / |first| (row norms)."""
    recomputed, first = recomputed.detach().double().flatten(1), first.detach().double().flatten(1)
    scale = first.norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    return float(((recomputed - first).norm(dim=1) / scale).max())


def multistage_step(model: nn.Module, images: torch.Tensor | ChunkSource, labels: torch.Tensor | None, criterion,
                    chunk_size: int, autocast: torch.dtype | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> tuple[torch.Tensor, dict] | None:
    """Accumulate into the parameters' ``.grad`` the gradient of ``criterion(model(images), labels)``,
    holding the images and activations of at most ``chunk_size`` images at a time. Returns the
    (detached) loss and the criterion's terms, or None when no image of the batch was readable; the
    caller zeroes gradients before and steps the optimizer after.

    ``images``: a (B, 3, H, W) tensor with its (B,) ``labels``, or a :class:`ChunkSource` (which
    gives the labels; ``labels`` is ignored) that reads each chunk when it is needed (twice: stages
    1 and 3). ``criterion(outputs, labels) -> (loss, terms)`` may read any output of the head
    (tensors or lists of tensors); it sees them in float32 (float64 stays float64). Parameters of
    the criterion itself (proxies) get their gradients in stage 2. ``autocast``: a dtype (float16,
    bfloat16) to run the model's forward passes under autocast, or None. ``scaler``: the GradScaler
    of float16 training; the loss is scaled before its backward, so ``scaler.step`` unscales as usual.

    Raises :class:`StagesDisagree` (a ValueError) when the two passes compute different functions.
    """
    if chunk_size < 1:
        raise ValueError(f"multistage chunk_size must be >= 1, got {chunk_size}")
    source = TensorChunks(images, labels) if isinstance(images, torch.Tensor) else images
    device = next(model.parameters()).device
    mixed = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()
    rng = _RandomState(device)

    def forward(chunk_images: torch.Tensor) -> list[tuple[Key, torch.Tensor]]:
        with mixed:
            return _flatten(_tensor_outputs(model(chunk_images.to(device, non_blocking=True))))

    # Stage 1: every output of the batch, no activations kept; the random state each chunk started from.
    per_chunk, chunk_labels, kept, states = [], [], [], []
    with torch.no_grad():
        for chunk_images, chunk_y, positions in source.read(partition(len(source), chunk_size)):
            if len(positions):
                states.append(rng.get())
                per_chunk.append(forward(chunk_images))
                chunk_labels.append(chunk_y)
                kept.append(positions)
    if not per_chunk:
        return None
    after_first_pass = rng.get()
    stochastic = not _RandomState.same(states[0], after_first_pass)
    keys = [key for key, _ in per_chunk[0]]
    leaves = {key: _at_least_float32(torch.cat([dict(outputs)[key] for outputs in per_chunk])).requires_grad_()
              for key in keys}
    sizes = [len(p) for p in kept]
    kept = torch.cat(kept)
    del per_chunk

    # Stage 2: the loss and its gradient with respect to each output.
    with torch.enable_grad():
        loss, terms = criterion(_unflatten(leaves), torch.cat(chunk_labels).to(device))
        if loss.requires_grad:
            (scaler.scale(loss) if scaler is not None else loss).backward()
    gradients = {key: leaf.grad for key, leaf in leaves.items() if leaf.grad is not None}
    if not gradients:
        raise ValueError("the criterion's loss does not depend on any model output, so there is nothing to train")

    # Stage 3: recompute each chunk with activations, check it against stage 1, backpropagate its gradients.
    if len(kept) < len(source):
        source = source.subset(kept)
    if stochastic:
        check_batch_statistics(model)
        bounds = [0, *torch.tensor(sizes).cumsum(0).tolist()]
        slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]  # the same chunks, replayed
    else:
        slices = partition(len(kept), chunk_size, first=max(1, min(chunk_size, len(kept)) // 2))
    _recompute(model, source, slices, forward, leaves, gradients, states if stochastic else None, rng,
               TOLERANCE.get(autocast, TOLERANCE[torch.bfloat16]))
    rng.set(after_first_pass)
    return loss.detach(), terms


def _recompute(model, source, slices, forward, leaves, gradients, states, rng, tolerance) -> None:
    """Stage 3. Under DistributedDataParallel, gradients are averaged across processes once, after the last chunk."""
    for number, (chunk_images, _, positions) in enumerate(source.read(slices)):
        chunk = slices[number]
        if len(positions) != chunk.stop - chunk.start:
            raise StagesDisagree(f"chunk {number} read {len(positions)} of its {chunk.stop - chunk.start} images "
                                 "in stage 3 but all of them in stage 1: the image source is not deterministic")
        if states is not None:
            rng.set(states[number])
        last = number == len(slices) - 1
        with torch.enable_grad(), (nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()):
            outputs = [(key, tensor) for key, tensor in forward(chunk_images) if key in gradients]
            for key, tensor in outputs:
                difference = _largest_difference(tensor, leaves[key][chunk])
                if not difference <= tolerance:
                    raise StagesDisagree(
                        f"multistage backprop: output {key[0]!r} of images {chunk.start}..{chunk.stop - 1} differs "
                        f"between the two forward passes by {difference:.3g} (relative; tolerance {tolerance:g}), "
                        "so the gradients would be wrong. The model's output for an image must depend on that "
                        "image and the parameters only: freeze BatchNorm statistics (train.freeze_bn=true), "
                        "or train without multistage.")
            tensors = [tensor for _, tensor in outputs]
            torch.autograd.backward(tensors, [gradients[key][chunk].to(t.dtype) for (key, _), t in
                                              zip(outputs, tensors)])
