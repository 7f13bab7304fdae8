"""Multi-process training with PyTorch's own engine (torchrun + DistributedDataParallel).

The listwise losses must see the whole global batch. Each process gathers every process's
outputs with a differentiable all-gather and computes the loss of the global batch. In the
backward pass the all-gather sums, into each process's own slice, the gradients that all W
processes computed for it; as every process computed the same global loss, that is W times the
global-batch gradient of its slice. DistributedDataParallel then averages parameter gradients
over the W processes, which leaves exactly the gradient of the global-batch loss: nothing is
double counted. ``tests/engine/test_distributed.py`` checks this against one process.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_gather as differentiable_all_gather


@dataclass(frozen=True)
class Topology:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_from_environment(device_name: str = "auto") -> tuple[Topology, torch.device]:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK), if any.

    NCCL on GPUs, gloo on CPUs. Without torchrun this is a single process and does nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 and not dist.is_initialized():
        return Topology(), resolve_device(device_name)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Topology(dist.get_rank(), dist.get_world_size(), local_rank), device


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this process's GPU when there is one, else the CPU; any other name as given."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    return torch.device(name)


def gather_batch(outputs: dict, labels: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Every process's outputs and labels, concatenated in rank order (outputs differentiably)."""
    def cat(tensor):
        return torch.cat(differentiable_all_gather(tensor.contiguous()))

    gathered = {key: [cat(t) for t in value] if isinstance(value, (list, tuple)) else cat(value)
                for key, value in outputs.items() if isinstance(value, (torch.Tensor, list, tuple))}
    parts = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, labels.contiguous())
    return gathered, torch.cat(parts)


class GlobalBatchCriterion(nn.Module):
    """A criterion evaluated on the global batch gathered from all processes."""

    def __init__(self, criterion: nn.Module):
        super().__init__()
        self.criterion = criterion

    def forward(self, outputs: dict, labels: torch.Tensor):
        return self.criterion(*gather_batch(outputs, labels))


def freeze_unread_parameters(model: nn.Module, read: set[str], image_size: int, device) -> list[str]:
    """Stop training the parameters that no output in ``read`` depends on; returns their names.

    A loss that reads only some of the model's outputs (CGD ranking only: no loss on the classifier's
    logits) leaves the other outputs' parameters without a gradient, which DistributedDataParallel
    refuses ("Expected to have finished reduction in the prior iteration"). Found by differentiating
    the read outputs of a two-image probe (whichever outputs the model has); frozen parameters keep
    their initial values and stay in the state dict.
    """
    was_training = model.training
    model.eval()
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        outputs = model(torch.zeros(2, 3, image_size, image_size, device=device))
        tensors = [t for key in sorted(read & set(outputs))
                   for t in (outputs[key] if isinstance(outputs[key], (list, tuple)) else [outputs[key]])]
        grads = torch.autograd.grad(sum(t.sum() for t in tensors), [p for _, p in trainable], allow_unused=True) \
            if tensors else [None] * len(trainable)
    model.train(was_training)
    unread = [name for (name, p), g in zip(trainable, grads) if g is None]
    for name, p in trainable:
        if name in unread:
            p.requires_grad_(False)
    return unread


def wrap_model(model: nn.Module, topology: Topology, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model`` when there are several processes."""
    if not topology.distributed:
        return model
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def gather_features(features: torch.Tensor, count: int, topology: Topology) -> torch.Tensor:
    """Rows extracted as strided shards (process r holds items r, r+W, ...) back in item order."""
    if not topology.distributed:
        return features
    share = -(-count // topology.world_size)
    padded = torch.zeros(share, features.shape[1], dtype=features.dtype, device=features.device)
    padded[: len(features)] = features
    parts = [torch.empty_like(padded) for _ in range(topology.world_size)]
    dist.all_gather(parts, padded)
    return torch.stack(parts, dim=1).reshape(-1, features.shape[1])[:count]


def barrier(topology: Topology) -> None:
    if topology.distributed:
        dist.barrier()
