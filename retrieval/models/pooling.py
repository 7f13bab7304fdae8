"""Global pooling of a (B, C, H, W) feature map into (B, C) descriptors.

Pure functions first (``spoc``, ``mac``, ``gem``), thin modules after, and the ``POOLINGS``
registry a head builds its pooling from by name.
"""
from __future__ import annotations

from typing import Annotated

import torch
from torch import nn

from retrieval.config.constraints import Range
from retrieval.registry import Registry

#: ``POOLINGS.build(name, **args)`` -> an ``nn.Module`` mapping (B, C, H, W) to (B, C).
POOLINGS: Registry = Registry("pooling")


def spoc(x: torch.Tensor) -> torch.Tensor:
    """Sum-pooled convolutional features (Babenko & Lempitsky, 2015), as a spatial mean."""
    return x.mean(dim=(-2, -1))


def mac(x: torch.Tensor) -> torch.Tensor:
    """Maximum activation of convolutions (Tolias et al., 2016): the spatial maximum."""
    return x.amax(dim=(-2, -1))


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalized mean (Radenović et al., 2018): ``(mean(x^p))^(1/p)`` over space.

    ``p = 1`` is SPoC and ``p -> inf`` tends to MAC. Activations are clamped at ``eps`` first,
    since a fractional power of a negative number is undefined.
    """
    return x.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


@POOLINGS.register("spoc")
class SPoC(nn.Module):
    """Sum-pooled convolutional features (Babenko & Lempitsky, ICCV 2015) as the mean: (B, C, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return spoc(x)


@POOLINGS.register("mac")
class MAC(nn.Module):
    """Maximum activation of convolutions (Tolias et al., ICLR 2016): (B, C, H, W) -> (B, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mac(x)


@POOLINGS.register("gem")
class GeM(nn.Module):
    """GeM with exponent ``p``; ``learn_p=True`` makes ``p`` a trained parameter (listwise AP's net)."""

    def __init__(self, p: Annotated[float, Range(gt=0)] = 3.0, learn_p: bool = False,
                 eps: Annotated[float, Range(gt=0)] = 1e-6):
        super().__init__()
        if p <= 0:
            raise ValueError(f"GeM exponent p must be positive, got {p}")
        p = torch.tensor([float(p)])
        if learn_p:
            self.p = nn.Parameter(p)
        else:
            self.register_buffer("p", p)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p, self.eps)

    def extra_repr(self) -> str:
        return f"p={float(self.p):.4g}, learn_p={isinstance(self.p, nn.Parameter)}, eps={self.eps}"
