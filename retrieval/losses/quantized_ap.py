"""mAP_Q, the listwise loss of Revaud et al. (ICCV 2019), optionally tie-aware and class-weighted."""
from __future__ import annotations

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward


@LOSSES.register("quantized_ap")
class QuantizedAPLoss(nn.Module):
    """``1 - mean AP_Q`` with every batch item a query against all the others (itself excluded).

    Scores are dot products of the (L2-normalised) embeddings, soft-binned into ``num_bins`` bins spanning
    ``score_range`` (see :func:`functional.soft_histograms`). ``tie_aware`` uses the tie-aware AP_T instead,
    in its full or ``simplified`` form (:func:`functional.tie_aware_quantized_ap`). ``harmonic`` chooses how
    the full AP_T evaluates its harmonic sums: ``"log"`` (default), the logarithm of the authors' released code
    (naver/deep-image-retrieval ``dirtorch/loss.py``, which produced the paper's AP_T figure), or ``"exact"``.

    ``class_weighted``: the listwise paper balances classes of unequal size (its landmark classes are
    long-tailed) so that each class weighs the same. Here each query is weighted by the inverse of its class's
    number of items in the batch, so the loss is one minus the mean over classes of the mean AP of that
    class's queries: a class with 40 images in the batch counts as much as one with 4. Queries without a
    positive (classes with one item in the batch) are left out either way.
    """

    def __init__(self, num_bins: int = 20, score_range: tuple[float, float] = (-1.0, 1.0), tie_aware: bool = False,
                 simplified: bool = False, class_weighted: bool = False, harmonic: str = "log"):
        super().__init__()
        if len(score_range) != 2:
            raise ValueError(f"score_range must be (min, max), got {score_range!r}")
        if simplified and not tie_aware:
            raise ValueError("simplified=True selects the simplified tie-aware AP; set tie_aware=True as well")
        if harmonic not in F.HARMONIC_SUMS:
            raise ValueError(f"harmonic must be one of {F.HARMONIC_SUMS} (how AP_T sums 1/rank), got {harmonic!r}")
        self.num_bins = num_bins
        self.min_score, self.max_score = (float(s) for s in score_range)
        F.check_bins(num_bins, self.min_score, self.max_score)
        self.tie_aware, self.simplified, self.class_weighted = tie_aware, simplified, class_weighted
        self.harmonic = harmonic

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        scores, relevance = F.batch_ranking(embeddings, labels, include_self=False)
        if self.tie_aware:
            ap = F.tie_aware_quantized_ap(scores, relevance, self.num_bins, self.min_score, self.max_score,
                                          simplified=self.simplified, harmonic=self.harmonic)
        else:
            ap = F.quantized_ap(scores, relevance, self.num_bins, self.min_score, self.max_score)
        weights = F.inverse_class_frequency(labels) if self.class_weighted else None
        return F.mean_ap_loss(ap, relevance, weights)

    def extra_repr(self) -> str:
        return (f"num_bins={self.num_bins}, score_range=({self.min_score}, {self.max_score}), "
                f"tie_aware={self.tie_aware}, simplified={self.simplified}, harmonic={self.harmonic!r}, "
                f"class_weighted={self.class_weighted}")
