"""FastAP (Cakir et al., CVPR 2019): AP over a soft histogram of squared distances."""
from __future__ import annotations

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward

# Squared Euclidean distances between unit vectors lie in [0, 4].
_MAX_SQUARED_DISTANCE = 4.0


@LOSSES.register("fastap")
class FastAPLoss(nn.Module):
    """``1 - mean FastAP`` with every batch item a query against the others.

    FastAP bins squared distances of the L2-normalised embeddings with triangular kernels centred at
    ``num_bins + 1`` evenly spaced points of [0, 4]; its AP is ``sum_z h+_z H+_z / H_z / N+`` (h per bin,
    H cumulated). That is AP_Q on the scores ``-d^2`` with ``num_bins + 1`` bins over [-4, 0], so it runs on
    the same two-bins-per-score histograms as :class:`QuantizedAPLoss`, in O(B^2) memory.
    """

    def __init__(self, num_bins: int = 10):
        super().__init__()
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"num_bins must be a positive integer, got {num_bins!r}")
        self.num_bins = num_bins

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        F.check_batch(embeddings, labels)
        relevance = F.without_diagonal(F.same_label(labels))
        negative_squared = F.without_diagonal(-F.pairwise_distances(embeddings).square())
        ap = F.quantized_ap(negative_squared, relevance, self.num_bins + 1, -_MAX_SQUARED_DISTANCE, 0.0)
        return F.mean_ap_loss(ap, relevance)

    def extra_repr(self) -> str:
        return f"num_bins={self.num_bins}"
