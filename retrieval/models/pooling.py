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


#: Smallest exponent GeM uses: a learned p that training drives lower is clamped here, as 1/p and the
#: power it takes have no finite limit at p = 0.
MIN_GEM_P = 1e-2


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalized mean (Radenović et al., 2018): ``(mean(x^p))^(1/p)`` over space, (B, C, H, W) -> (B, C).

    ``p = 1`` is SPoC and ``p -> inf`` tends to MAC. Activations are clamped at ``eps`` first,
    since a fractional power of a negative number is undefined. Computed in at least float32 (also
    under autocast) as ``m * mean((x/m)^p)^(1/p)`` with ``m`` the spatial maximum: the same value,
    but the mean is at least 1/(H W), so nothing underflows (``eps^p`` is 0 in float32 for
    p >= 7.6, which made the gradient NaN) and the value and its gradients (p too) stay finite for
    every p >= ``MIN_GEM_P``. ``m`` needs no gradient: GeM is 1-homogeneous, so it cancels.
    """
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    p = p.clamp(min=MIN_GEM_P).to(x.dtype) if isinstance(p, torch.Tensor) else max(float(p), MIN_GEM_P)
    x = x.clamp(min=eps)
    peak = x.detach().amax(dim=(-2, -1), keepdim=True)
    with torch.autocast(x.device.type, enabled=False):
        return peak[..., 0, 0] * (x / peak).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


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
