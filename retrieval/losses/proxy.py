"""Proxy-based losses: one learnable proxy per class."""
from __future__ import annotations

import torch
from torch import nn

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.base import float32_forward


@LOSSES.register("proxy_nca")
class ProxyNCALoss(nn.Module):
    """ProxyNCA (:func:`functional.proxy_nca_loss`) with a learnable (num_classes, embedding_dim) proxy
    matrix; the engine supplies ``num_classes`` and ``embedding_dim`` and trains the proxies with the model."""

    def __init__(self, num_classes: int, embedding_dim: int):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"ProxyNCA needs at least 2 classes (it contrasts with the others), got {num_classes}")
        if embedding_dim < 1:
            raise ValueError(f"embedding_dim must be positive, got {embedding_dim}")
        self.proxies = nn.Parameter(torch.randn(num_classes, embedding_dim))

    @float32_forward
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        F.check_batch(embeddings, labels)
        num_classes, dim = self.proxies.shape
        if embeddings.shape[1] != dim:
            raise ValueError(f"embeddings have {embeddings.shape[1]} dimensions but the proxies {dim}")
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}) for {num_classes} proxies, got range "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        return F.proxy_nca_loss(embeddings, labels, self.proxies)

    def extra_repr(self) -> str:
        return "num_classes={}, embedding_dim={}".format(*self.proxies.shape)
