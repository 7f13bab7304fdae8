"""Smooth-AP (Brown et al., ECCV 2020): AP whose rank indicator is a sigmoid."""
from __future__ import annotations

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward


@LOSSES.register("smooth_ap")
class SmoothAPLoss(nn.Module):
    """``1 - mean Smooth-AP`` with every batch item a query (see :func:`functional.smooth_ap`).

    ``include_self=True`` (the default) reproduces the authors' code, which produced the published numbers:
    each query stays in its own retrieval set as a positive (score with itself) ranked against the rest, so
    every query has at least one positive. ``include_self=False`` is the paper's definition: the query is
    removed from its retrieval set, and queries whose class has no other item in the batch are left out.
    Unlike the authors' code, any labels work: any number of classes and of items per class, in any order.
    """

    def __init__(self, temperature: float = 0.01, include_self: bool = True,
                 chunk_elements: int = F.DEFAULT_CHUNK_ELEMENTS):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.temperature, self.include_self, self.chunk_elements = temperature, include_self, chunk_elements

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores, relevance = F.batch_ranking(embeddings, labels, include_self=self.include_self)
        ap = F.smooth_ap(scores, relevance, self.temperature, chunk_elements=self.chunk_elements)
        return F.mean_ap_loss(ap, relevance)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, include_self={self.include_self}"
