"""The total training loss: a weighted sum of configured terms on the model's outputs."""
from __future__ import annotations

import inspect

import torch
from torch import nn

from retrieval.config import LossTerm
from retrieval.losses.functional import at_least_float32


def build_loss(term: LossTerm, num_classes: int, embedding_dim: int) -> nn.Module:
    """``LOSSES[term.name](**term.args)``, passing ``num_classes``/``embedding_dim`` to losses that take them."""
    from retrieval.losses import LOSSES

    factory = LOSSES.get(term.name)
    accepted = inspect.signature(factory).parameters
    injected = {k: v for k, v in (("num_classes", num_classes), ("embedding_dim", embedding_dim)) if k in accepted}
    return factory(**term.args, **injected)


class Criterion(nn.Module):
    """``criterion(outputs, labels) -> (total, {term: value})``; holds losses with parameters (proxies)."""

    def __init__(self, terms: dict[str, LossTerm], num_classes: int, embedding_dim: int):
        super().__init__()
        self.terms = dict(terms)
        self.losses = nn.ModuleDict({name: build_loss(t, num_classes, embedding_dim) for name, t in terms.items()})

    def forward(self, outputs: dict, labels: torch.Tensor):
        total, values = 0.0, {}
        for name, term in self.terms.items():
            if term.input not in outputs:
                raise KeyError(f"loss term {name!r} reads model output {term.input!r}, but the model gives "
                               f"{sorted(outputs)}; set losses.{name}.input to one of them")
            inputs = outputs[term.input]
            parts = inputs if isinstance(inputs, (list, tuple)) else [inputs]
            value = sum(self.losses[name](at_least_float32(part), labels) for part in parts)
            values[name] = float(value.detach())
            total = total + term.weight * value
        return total, values
