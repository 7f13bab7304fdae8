"""Losses, importable by class (``from retrieval.losses import SmoothAPLoss``) or built by name
(``LOSSES.build("smooth_ap", temperature=0.01)``).

Every module here is called ``loss(embeddings, labels)``: ``embeddings`` (B, D) float, L2-normalised rows (a
model's ``"embedding"`` output); ``labels`` (B,) integers, any values, any number of items per class, any order;
it returns a scalar tensor to minimise (for the AP losses, ``1 - mean AP`` over the queries that have a
positive). The classification loss takes ``(logits (B, K), labels in 0..K-1)``; the proxy loss owns one
trainable proxy per class. Bad shapes or dtypes raise ValueError naming them. Under autocast the loss is
computed in float32.

Pure functions on score matrices and distances live in :mod:`retrieval.losses.functional`; the modules
are thin wrappers that turn a batch of embeddings (or logits) and labels into them.
"""
from retrieval.registry import Registry

LOSSES = Registry("loss")

from retrieval.losses import (  # noqa: E402  (the modules register themselves in LOSSES)
    blackbox_ap,
    classification,
    fastap,
    functional,
    pairwise,
    proxy,
    quantized_ap,
    smooth_ap,
)
from retrieval.losses.blackbox_ap import BlackBoxAPLoss  # noqa: E402
from retrieval.losses.classification import TemperatureLabelSmoothingCE  # noqa: E402
from retrieval.losses.fastap import FastAPLoss  # noqa: E402
from retrieval.losses.pairwise import BatchHardTripletLoss, ContrastiveLoss, TripletLoss  # noqa: E402
from retrieval.losses.proxy import ProxyNCALoss  # noqa: E402
from retrieval.losses.quantized_ap import QuantizedAPLoss  # noqa: E402
from retrieval.losses.smooth_ap import SmoothAPLoss  # noqa: E402

__all__ = ["LOSSES", "BatchHardTripletLoss", "BlackBoxAPLoss", "ContrastiveLoss", "FastAPLoss", "ProxyNCALoss",
           "QuantizedAPLoss", "SmoothAPLoss", "TemperatureLabelSmoothingCE", "TripletLoss", "functional",
           "blackbox_ap", "classification", "fastap", "pairwise", "proxy", "quantized_ap", "smooth_ap"]
