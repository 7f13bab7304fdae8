"""Keeping non-finite numbers out of the weights: the gradient is checked before the optimizer step
and the weights after it, so that a skipped step (``train.nonfinite=skip``) leaves the weights and
the optimizer's state as they were, and no checkpoint ever holds a non-finite value."""
from __future__ import annotations

import copy

import torch
from torch import nn


def first_nonfinite(named: list[tuple[str, torch.Tensor | None]]) -> str | None:
    """The name of the first tensor with a NaN or an infinity (None tensors are skipped), or None."""
    present = [(name, t) for name, t in named if t is not None]
    if not present:
        return None
    finite = torch.stack([torch.isfinite(t).all() for _, t in present]).tolist()  # one device sync
    return next((name for (name, _), ok in zip(present, finite) if not ok), None)


class GuardedParameters:
    """The trained parameters by name, with their gradients' and values' finiteness and an undo of one step."""

    def __init__(self, named: list[tuple[str, nn.Parameter]], optimizer: torch.optim.Optimizer):
        trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.named = [(name, p) for name, p in named if id(p) in trained]
        self.optimizer = optimizer

    def nonfinite_gradient(self) -> str | None:
        return first_nonfinite([(name, p.grad) for name, p in self.named])

    def nonfinite_weight(self) -> str | None:
        return first_nonfinite([(name, p.detach()) for name, p in self.named])

    def snapshot(self) -> tuple[list[torch.Tensor], dict]:
        """A copy of the weights and of the optimizer's state (costs their memory once)."""
        return [p.detach().clone() for _, p in self.named], copy.deepcopy(self.optimizer.state_dict())

    def restore(self, snapshot: tuple[list[torch.Tensor], dict]) -> None:
        weights, state = snapshot
        with torch.no_grad():
            for (_, p), saved in zip(self.named, weights):
                p.copy_(saved)
        self.optimizer.load_state_dict(state)
