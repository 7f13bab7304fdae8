"""Heads: a feature map (B, C, H, W) to the model's outputs, built by name from ``HEADS``.

A head is built as ``Head(in_channels, num_classes, **args)``; its forward returns a dict with
``"embedding"`` (B, D), L2-normalised, and optionally ``"logits"`` (B, num_classes) and
``"branches"`` (a list of L2-normalised (B, d) embeddings). Heads that make no logits accept
``num_classes`` and ignore it, so every head is built the same way.
"""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.config.constraints import ArgumentsOf, OneOf, Range
from retrieval.models.pooling import POOLINGS
from retrieval.registry import Registry

#: ``HEADS.get(name)(in_channels, num_classes, **args)`` -> a head module.
HEADS: Registry = Registry("head")


@HEADS.register("embedding")
class EmbeddingHead(nn.Module):
    """Pooling, then an optional linear layer, then L2 normalisation.

    ``normalize_pooled=True`` L2-normalises the pooled descriptor before the linear layer (the
    learned-whitening layer of cnnimageretrieval-pytorch's ``-w`` networks, and the listwise AP
    authors' ``norm_features`` option).

    Listwise AP's net is ``pooling="gem", pooling_args={"learn_p": True}, dim=2048``; Smooth-AP's
    is a pooling then ``dim=512``. ``dim=None`` leaves out the linear layer (off-the-shelf
    pooled descriptors). The linear layer is ``self.fc``, so an optimizer group can give it its
    own learning rate by the parameter name ``head.fc``.
    """

    def __init__(self, in_channels: int, num_classes: int = 0, pooling: Annotated[str, OneOf(POOLINGS)] = "gem",
                 pooling_args: Annotated[dict | None, ArgumentsOf("pooling", POOLINGS)] = None,
                 dim: Annotated[int | None, Range(ge=1)] = None, bias: bool = True, normalize_pooled: bool = False):
        super().__init__()
        self.pool = POOLINGS.build(pooling, **(pooling_args or {}))
        self.normalize_pooled = normalize_pooled
        self.fc = None if dim is None else nn.Linear(in_channels, dim, bias=bias)

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.pool(feature_map)
        if self.normalize_pooled:
            x = F.normalize(x, dim=-1)
        if self.fc is not None:
            x = self.fc(x)
        return {"embedding": F.normalize(x, dim=-1)}


@HEADS.register("identity_l2")
class IdentityL2Head(nn.Module):
    """For backbones whose last layer already is the embedding (the face nets give (B, D, 1, 1)):
    just L2-normalise it."""

    def __init__(self, in_channels: int, num_classes: int = 0):
        super().__init__()

    def forward(self, feature_map: torch.Tensor) -> dict[str, torch.Tensor]:
        if feature_map.shape[-2:] != (1, 1):
            raise ValueError(f"head 'identity_l2' needs a (B, D, 1, 1) embedding from the backbone, got "
                             f"{tuple(feature_map.shape)}; use a pooling head such as 'embedding' instead")
        return {"embedding": F.normalize(feature_map.flatten(1), dim=-1)}
