"""Multistage backpropagation (Revaud et al., ICCV 2019, Sec. 4.3): a batch larger than memory.

A listwise loss needs every output of the batch at once, but the activations of only a chunk
of images fit in memory. So one step runs in three stages:

1. forward the batch chunk by chunk without autograd, keeping only the head's outputs;
2. compute the loss on those outputs (as leaf tensors) and backpropagate it to them, which
   gives d loss / d output for every output of every image;
3. forward each chunk again, now with autograd, and backpropagate its slice of those gradients.

Parameter gradients accumulate over the chunks to exactly those of backpropagating the loss
through the whole batch at once, provided both forward passes compute the same function. That
is why BatchNorm must use frozen statistics (eval mode; ``train.freeze_bn``) and dropout must
be off: in training mode both would make the recomputed chunk differ from the first pass (and
BatchNorm would normalise per chunk, not per batch, and update its statistics twice).
:func:`multistage_step` checks this and raises an error naming the modules; it does not
switch modes behind the caller's back.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import nn

Outputs = dict[str, torch.Tensor | list[torch.Tensor]]


def check_stages_agree(model: nn.Module) -> None:
    """Raise if a module would make the two forward passes differ: BatchNorm or dropout in training mode."""
    offending = [
        name or type(module).__name__
        for name, module in model.named_modules()
        if module.training and (
            (isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats)
            or (isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0)
        )
    ]
    if offending:
        raise ValueError(
            "multistage backprop recomputes each chunk, so both passes must compute the same function; "
            f"these modules are in training mode (BatchNorm with batch statistics or active dropout): "
            f"{', '.join(offending[:8])}{' ...' if len(offending) > 8 else ''}. Freeze BatchNorm statistics "
            "(train.freeze_bn=true) and turn dropout off, or train without multistage."
        )


def _tensor_outputs(outputs: dict) -> Outputs:
    """The outputs a loss can differentiate: tensors and lists of tensors."""
    return {k: v for k, v in outputs.items()
            if isinstance(v, torch.Tensor) or (isinstance(v, (list, tuple)) and all(isinstance(t, torch.Tensor)
                                                                                     for t in v))}


def _flatten(outputs: Outputs) -> list[tuple[tuple[str, int | None], torch.Tensor]]:
    """``[((key, position in list or None), tensor), ...]`` in a fixed order."""
    flat = []
    for key in sorted(outputs):
        value = outputs[key]
        if isinstance(value, torch.Tensor):
            flat.append(((key, None), value))
        else:
            flat.extend(((key, i), t) for i, t in enumerate(value))
    return flat


def _unflatten(flat: dict[tuple[str, int | None], torch.Tensor]) -> Outputs:
    outputs: Outputs = {}
    for (key, position), tensor in flat.items():
        if position is None:
            outputs[key] = tensor
        else:
            outputs.setdefault(key, []).append(tensor)
    return outputs


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype in (torch.float32, torch.float64) else tensor.float()


def multistage_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, criterion, chunk_size: int,
                    autocast: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None
                    ) -> tuple[torch.Tensor, dict]:
    """Accumulate into the parameters' ``.grad`` the gradient of ``criterion(model(images), labels)``,
    holding the activations of at most ``chunk_size`` images at a time. Returns the (detached) loss
    and the criterion's terms; the caller zeroes gradients before and steps the optimizer after.

    ``criterion(outputs, labels) -> (loss, terms)`` may read any output of the head (tensors or
    lists of tensors); it sees them in float32 (float64 stays float64). Parameters of the
    criterion itself (proxies) get their gradients in stage 2. ``images`` may stay on the CPU
    (pinned): each chunk moves to the model's device. ``autocast``: a dtype (float16, bfloat16)
    to run the model's forward passes under autocast, or None. ``scaler``: the GradScaler of
    float16 training; the loss is scaled before its backward, so ``scaler.step`` unscales as usual.
    """
    if chunk_size < 1:
        raise ValueError(f"multistage chunk_size must be >= 1, got {chunk_size}")
    check_stages_agree(model)
    device = next(model.parameters()).device
    chunks = [slice(start, start + chunk_size) for start in range(0, len(images), chunk_size)]
    mixed = torch.autocast(device.type, dtype=autocast) if autocast is not None else nullcontext()

    def forward(chunk: slice) -> list[tuple[tuple[str, int | None], torch.Tensor]]:
        with mixed:
            return _flatten(_tensor_outputs(model(images[chunk].to(device, non_blocking=True))))

    # Stage 1: every output of the batch, no activations kept.
    with torch.no_grad():
        per_chunk = [forward(chunk) for chunk in chunks]
    keys = [key for key, _ in per_chunk[0]]
    leaves = {key: _at_least_float32(torch.cat([dict(outputs)[key] for outputs in per_chunk])).requires_grad_()
              for key in keys}
    del per_chunk

    # Stage 2: the loss and its gradient with respect to each output.
    with torch.enable_grad():
        loss, terms = criterion(_unflatten(leaves), labels)
        if loss.requires_grad:
            (scaler.scale(loss) if scaler is not None else loss).backward()
    gradients = {key: leaf.grad for key, leaf in leaves.items() if leaf.grad is not None}
    if not gradients:
        raise ValueError("the criterion's loss does not depend on any model output, so there is nothing to train")

    # Stage 3: recompute each chunk with activations and backpropagate its slice of the gradients.
    # Under DistributedDataParallel, gradients are averaged across processes once, after the last chunk.
    for number, chunk in enumerate(chunks):
        last = number == len(chunks) - 1
        with torch.enable_grad(), (nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()):
            outputs = [(tensor, gradients[key][chunk]) for key, tensor in forward(chunk) if key in gradients]
            tensors, grads = zip(*outputs)
            torch.autograd.backward(tensors, [g.to(t.dtype) for t, g in zip(tensors, grads)])
    return loss.detach(), terms
