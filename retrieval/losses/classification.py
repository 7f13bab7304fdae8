"""Classification losses on logits, such as CGD's auxiliary classifier."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses.base import float32_forward


@LOSSES.register("temperature_ce")
class TemperatureLabelSmoothingCE(nn.Module):
    """Cross-entropy of ``softmax(logits / temperature)`` against labels smoothed uniformly over all K
    classes: the target is ``(1 - smoothing) * one_hot + smoothing / K`` (Jun et al.'s auxiliary loss)."""

    def __init__(self, temperature: float = 0.5, smoothing: float = 0.1):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.temperature, self.smoothing = temperature, smoothing

    @float32_forward
    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or labels.shape != logits.shape[:1]:
            raise ValueError(f"logits must be (batch, classes) and labels (batch,); got {tuple(logits.shape)} and "
                             f"{tuple(labels.shape)}")
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < logits.shape[1]):
            raise ValueError(f"labels must lie in [0, {logits.shape[1]}) for {logits.shape[1]} logits, got range "
                             f"[{int(labels.min())}, {int(labels.max())}]; is the head's num_classes right?")
        return F.cross_entropy(logits / self.temperature, labels, label_smoothing=self.smoothing)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, smoothing={self.smoothing}"
