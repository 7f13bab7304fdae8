"""Combination of multiple Global Descriptors (Jun et al., 2019): the "cgd" head.

Each descriptor (S = SPoC, M = MAC, G = GeM) pools the feature map, a bias-free FC maps it to
its share of the embedding, and it is L2-normalised; the branches are concatenated and
L2-normalised again. An auxiliary classifier (BatchNorm then FC) reads the FIRST descriptor's
pooled vector, before its FC; the temperature and label smoothing of its cross-entropy belong
to the loss. The paper's ablation variants: ``normalize_branches=False`` concatenates the FC
outputs without normalising each, and the per-branch embeddings come out as ``"branches"``
so a config can put a separate ranking loss on each.
"""
from __future__ import annotations

from itertools import permutations
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.config.constraints import Range
from retrieval.models.heads import HEADS
from retrieval.models.pooling import MAC, GeM, SPoC

#: The paper's 12 descriptor configurations, in its order.
PAPER_CONFIGURATIONS = ("S", "M", "G", "SM", "MS", "SG", "GS", "MG", "GM", "SMG", "MSG", "GSM")
#: Every ordered combination of distinct letters (what ``descriptors`` accepts).
DESCRIPTORS = tuple("".join(letters) for n in (1, 2, 3) for letters in permutations("SMG", n))


def _pooling(letter: str, gem_p: float) -> nn.Module:
    if letter == "G":
        return GeM(p=gem_p)
    return SPoC() if letter == "S" else MAC()


@HEADS.register("cgd")
class CGDHead(nn.Module):
    """``descriptors``: an ordered combination of distinct letters from S, M, G (e.g. ``"SG"``);
    ``dim``: total embedding size, split evenly over the descriptors; ``gem_p``: GeM's fixed
    exponent. ``num_classes`` sizes the auxiliary classifier."""

    def __init__(self, in_channels: int, num_classes: int, descriptors: Literal[DESCRIPTORS] = "SG",
                 dim: Annotated[int, Range(ge=1)] = 1536, gem_p: Annotated[float, Range(gt=0)] = 3.0,
                 normalize_branches: bool = True):
        super().__init__()
        if not descriptors or set(descriptors) - set("SMG") or len(set(descriptors)) != len(descriptors):
            raise ValueError(f"cgd descriptors must be distinct letters from 'S', 'M', 'G' (e.g. 'SG'), "
                             f"got {descriptors!r}")
        if dim % len(descriptors):
            raise ValueError(f"cgd dim={dim} cannot be split evenly over {len(descriptors)} descriptors "
                             f"{descriptors!r}; use a multiple of {len(descriptors)}")
        if num_classes < 1:
            raise ValueError(f"cgd needs num_classes >= 1 for its auxiliary classifier, got {num_classes}")
        self.descriptors, self.normalize_branches = descriptors, normalize_branches
        self.pools = nn.ModuleList(_pooling(letter, gem_p) for letter in descriptors)
        self.fcs = nn.ModuleList(nn.Linear(in_channels, dim // len(descriptors), bias=False) for _ in descriptors)
        self.classifier = nn.Sequential(nn.BatchNorm1d(in_channels), nn.Linear(in_channels, num_classes))

    def forward(self, feature_map: torch.Tensor) -> dict:
        pooled = [pool(feature_map) for pool in self.pools]
        projected = [fc(x) for fc, x in zip(self.fcs, pooled)]
        branches = [F.normalize(x, dim=-1) for x in projected]
        combined = torch.cat(branches if self.normalize_branches else projected, dim=-1)
        return {
            "embedding": F.normalize(combined, dim=-1),
            "logits": self.classifier(pooled[0]),
            "branches": branches,
        }
