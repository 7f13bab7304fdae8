"""AP optimised through blackbox differentiation of ranking (Rolinek et al., CVPR 2020)."""
from __future__ import annotations

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward


@LOSSES.register("blackbox_ap")
class BlackBoxAPLoss(nn.Module):
    """``1 - mean AP`` computed from exact ranks, every batch item a query against the others, with the
    gradient of the ranking's piecewise-linear interpolation (:func:`functional.blackbox_ap`).

    ``interpolation`` is lambda, ``margin`` alpha; both are hyper-parameters a paper's config sets with its
    source. Rolinek et al.'s memory of past batches is not part of the loss.
    """

    def __init__(self, interpolation: float = 4.0, margin: float = 0.0):
        super().__init__()
        if not interpolation > 0:
            raise ValueError(f"interpolation (lambda) must be > 0, got {interpolation!r}")
        self.interpolation, self.margin = interpolation, margin

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores, relevance = F.batch_ranking(embeddings, labels, include_self=False)
        ap = F.blackbox_ap(scores, relevance, self.interpolation, self.margin)
        return F.mean_ap_loss(ap, relevance)

    def extra_repr(self) -> str:
        return f"interpolation={self.interpolation}, margin={self.margin}"
