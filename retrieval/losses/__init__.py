"""Losses, by name: ``LOSSES.build("smooth_ap", temperature=0.01)``; each is called ``loss(inputs, labels)``.

Pure functions on score matrices and distances live in :mod:`retrieval.losses.functional`; the modules
registered here are thin wrappers that turn a batch of embeddings (or logits) and labels into them.
"""
from retrieval.registry import Registry

LOSSES = Registry("loss")

from retrieval.losses import (  # noqa: E402  (the modules register themselves in LOSSES)
    blackbox_ap,
    classification,
    fastap,
    pairwise,
    proxy,
    quantized_ap,
    smooth_ap,
)

__all__ = ["LOSSES", "blackbox_ap", "classification", "fastap", "pairwise", "proxy", "quantized_ap", "smooth_ap"]
