"""Models: backbones, poolings, heads and whitening, assembled by :func:`build_model`, or used one by one.

A pooling maps a feature map (B, C, H, W) to (B, C); a head maps it to ``{"embedding": (B, D) L2-normalised,
optionally "logits": (B, num_classes), "branches": [...]}``; :class:`RetrievalNet` is backbone + head (+ an
optional whitening learned after training). Importing this package registers every backbone (including the
face nets) and every head.
"""
from retrieval.models import cgd, iresnet, senet  # noqa: F401  (register the CGD head and face nets)
from retrieval.models.backbones import BACKBONES
from retrieval.models.cgd import CGDHead
from retrieval.models.heads import HEADS, EmbeddingHead, IdentityL2Head
from retrieval.models.net import RetrievalNet, build_model
from retrieval.models.pooling import MAC, POOLINGS, GeM, SPoC, gem, mac, spoc
from retrieval.models.whitening import WHITENINGS, Whitening, fit_whitening

__all__ = ["BACKBONES", "CGDHead", "EmbeddingHead", "GeM", "HEADS", "IdentityL2Head", "MAC", "POOLINGS",
           "RetrievalNet", "SPoC", "WHITENINGS", "Whitening", "build_model", "fit_whitening", "gem", "mac", "spoc"]
