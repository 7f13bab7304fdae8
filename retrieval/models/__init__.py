"""Models: backbones, poolings, heads and whitening, assembled by :func:`build_model`.

Importing this package registers every backbone (including the face nets) and every head.
"""
from retrieval.models import cgd, iresnet, senet  # noqa: F401  (register the CGD head and face nets)
from retrieval.models.backbones import BACKBONES
from retrieval.models.heads import HEADS
from retrieval.models.net import RetrievalNet, build_model
from retrieval.models.pooling import POOLINGS
from retrieval.models.whitening import WHITENINGS, Whitening, fit_whitening

__all__ = ["BACKBONES", "HEADS", "POOLINGS", "RetrievalNet", "WHITENINGS", "Whitening", "build_model", "fit_whitening"]
