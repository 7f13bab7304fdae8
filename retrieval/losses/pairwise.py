"""Losses on pairs and triplets of Euclidean distances between L2-normalised embeddings."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward


class _DistanceLoss(nn.Module):
    """A margin loss on the batch's (B, B) distances and same-class mask, named by ``loss_of_distances``."""

    loss_of_distances: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]

    def __init__(self, margin: float):
        super().__init__()
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin!r}")
        self.margin = margin

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        F.check_batch(embeddings, labels)
        return self.loss_of_distances(F.pairwise_distances(embeddings), F.same_label(labels), self.margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


@LOSSES.register("contrastive")
class ContrastiveLoss(_DistanceLoss):
    """Contrastive loss over all pairs of the batch (:func:`functional.contrastive_loss`): the mean over
    pairs, where Radenovic et al.'s code sums, which only rescales the learning rate."""

    loss_of_distances = staticmethod(F.contrastive_loss)

    def __init__(self, margin: float = 0.7):
        super().__init__(margin)


@LOSSES.register("triplet")
class TripletLoss(_DistanceLoss):
    """Triplet loss with hard-negative mining, the listwise paper's baseline trained on the same batches:
    every (anchor, positive) pair against the anchor's hardest negative in the batch
    (:func:`functional.hard_negative_triplet_loss`)."""

    loss_of_distances = staticmethod(F.hard_negative_triplet_loss)

    def __init__(self, margin: float = 0.1):
        super().__init__(margin)


@LOSSES.register("batch_hard_triplet")
class BatchHardTripletLoss(_DistanceLoss):
    """Batch-hard triplet loss (Hermans et al. 2017), CGD's ranking loss: for each anchor its farthest positive
    against its closest negative, averaged over anchors (:func:`functional.batch_hard_triplet_loss`)."""

    loss_of_distances = staticmethod(F.batch_hard_triplet_loss)

    def __init__(self, margin: float = 0.1):
        super().__init__(margin)
