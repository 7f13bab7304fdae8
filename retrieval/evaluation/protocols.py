"""Evaluation protocols: how a split's features become the metrics a paper reports.

A protocol is ``fn(features, split, **args) -> {metric name: fraction}``, where ``features`` is
(N, D) float32, L2-normalised, row i being item i of ``split``. Register one with
``@PROTOCOLS.register("name")``; configs name them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from retrieval.data.split import GALLERY, QUERY, Split
from retrieval.evaluation.knn import DEFAULT_BLOCK_SIZE, as_features, exact_scores
from retrieval.evaluation.metrics import retrieval_metrics
from retrieval.evaluation.postprocess import alpha_query_expansion
from retrieval.evaluation.revisited import evaluate_revisited
from retrieval.registry import Registry

PROTOCOLS: Registry = Registry("evaluation protocol")


def _features_of(features, split: Split) -> torch.Tensor:
    features = as_features(features)
    if len(features) != len(split):
        raise ValueError(f"split {split.name!r} has {len(split)} items but {len(features)} feature rows were given")
    return features


def role_indices(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """Item indices of the split's queries and of its gallery, each in split order."""
    if split.roles is None:
        raise ValueError(f"split {split.name!r} has no query/gallery roles; use the 'leave_one_out' protocol "
                         f"or a dataset whose test split marks {QUERY!r} and {GALLERY!r} items")
    roles = np.asarray(split.roles)
    unknown = sorted(set(roles.tolist()) - {QUERY, GALLERY})
    if unknown:
        raise ValueError(f"split {split.name!r}: roles must be {QUERY!r} or {GALLERY!r}; found {unknown}")
    query, gallery = np.flatnonzero(roles == QUERY), np.flatnonzero(roles == GALLERY)
    if not len(query) or not len(gallery):
        raise ValueError(f"split {split.name!r} has {len(query)} queries and {len(gallery)} gallery items; "
                         "both must be present")
    return query, gallery


@PROTOCOLS.register("leave_one_out")
def leave_one_out(features, split: Split, ks: Sequence[int] = (1, 2, 4, 8),
                  block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Every item a query against all the others (CARS196, CUB, SOP, iNaturalist)."""
    return retrieval_metrics(_features_of(features, split), split.labels, ks=ks, block_size=block_size)


@PROTOCOLS.register("query_gallery")
def query_gallery(features, split: Split, ks: Sequence[int] = (1, 10, 20, 30, 40, 50),
                  block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Items of role "query" against items of role "gallery" (In-shop; the default K are In-shop's)."""
    features = _features_of(features, split)
    query, gallery = role_indices(split)
    labels = torch.as_tensor(split.labels)
    return retrieval_metrics(features[query], labels[query], features[gallery], labels[gallery], ks=ks,
                             block_size=block_size)


def one_per_identity(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(queries, gallery): one image of each identity drawn at random for the gallery, the rest queries."""
    shuffled = np.random.default_rng(seed).permutation(len(labels))
    _, first = np.unique(labels[shuffled], return_index=True)
    is_gallery = np.zeros(len(labels), dtype=bool)
    is_gallery[shuffled[first]] = True
    return np.flatnonzero(~is_gallery), np.flatnonzero(is_gallery)


@PROTOCOLS.register("vehicleid")
def vehicleid(features, split: Split, ks: Sequence[int] = (1, 5), gallery: str = "all", seed: int = 0,
              block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """VehicleID on one test list.

    ``gallery="all"``: every image a query against all others, as the Smooth-AP authors evaluated
    (the default). ``gallery="one_per_identity"``: the re-identification protocol, one random
    image per identity (drawn with ``seed``) forms the gallery and the rest are queries; its
    metrics are prefixed ``reid_`` so the two are never mixed up.
    """
    features = _features_of(features, split)
    if gallery == "all":
        return retrieval_metrics(features, split.labels, ks=ks, block_size=block_size)
    if gallery != "one_per_identity":
        raise ValueError(f"vehicleid: gallery must be 'all' or 'one_per_identity'; got {gallery!r}")
    query, chosen = one_per_identity(split.labels, seed)
    labels = torch.as_tensor(split.labels)
    metrics = retrieval_metrics(features[query], labels[query], features[chosen], labels[chosen], ks=ks,
                                block_size=block_size)
    return {f"reid_{name}": value for name, value in metrics.items()}


def group_means(features: torch.Tensor, labels: np.ndarray, groups: np.ndarray, split_name: str):
    """One L2-normalised mean feature and one label per group (IJB-C: the frames of one video)."""
    group_ids, inverse = np.unique(np.asarray(groups), return_inverse=True)
    label_of = np.full(len(group_ids), -1, dtype=np.int64)
    label_of[inverse] = labels
    mixed = np.flatnonzero(label_of[inverse] != labels)
    if len(mixed):
        raise ValueError(f"split {split_name!r}: group {group_ids[inverse[mixed[0]]]} holds items of different "
                         "labels; every item of a group must share its identity")
    sums = features.new_zeros(len(group_ids), features.shape[1])
    sums.index_add_(0, torch.as_tensor(inverse, device=features.device), features)
    return as_features(sums), label_of


@PROTOCOLS.register("faces")
def faces(features, split: Split, ks: Sequence[int] = (1,), min_instances: int = 5,
          block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """mAP over the full ranking, each instance a query against all others (VGGFace2, IJB-C).

    When ``split.groups`` is set, an instance is a group: the mean of its items' features,
    L2-normalised again, and identities with fewer than ``min_instances`` instances are dropped
    (Smooth-AP's IJB-C protocol).
    """
    features = _features_of(features, split)
    labels = np.asarray(split.labels)
    if split.groups is not None:
        features, labels = group_means(features, labels, split.groups, split.name)
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        keep = counts[inverse] >= min_instances
        if not keep.any():
            raise ValueError(f"split {split.name!r}: no identity has {min_instances} instances or more")
        features, labels = features[torch.as_tensor(np.flatnonzero(keep))], labels[keep]
    return retrieval_metrics(features, labels, ks=ks, block_size=block_size)


def revisited_scores(features, split: Split, qe_k: int = 0, qe_alpha: float = 0.0):
    """``(query items, database items, scores)`` of the revisited protocol: the exact similarities
    (Q, G) of the queries, expanded by α-QE when ``qe_k`` > 0, to the database, in gnd order."""
    features = _features_of(features, split)
    query, database = role_indices(split)
    if "gnd" not in split.extra:
        raise ValueError(f"split {split.name!r} has no extra['gnd'] ground truth for the revisited protocol")
    queries, gallery = features[torch.as_tensor(query)], features[torch.as_tensor(database)]
    return query, database, exact_scores(alpha_query_expansion(queries, gallery, qe_k, qe_alpha), gallery)


@PROTOCOLS.register("revisited")
def revisited(features, split: Split, kappas: Sequence[int] = (1, 5, 10), qe_k: int = 0,
              qe_alpha: float = 0.0) -> dict[str, float]:
    """Revisited Oxford/Paris: queries (role "query", in gnd order) against the database (role "gallery").

    ``qe_k`` > 0 expands each query by α-QE over its ``qe_k`` nearest database images with
    ``alpha = qe_alpha`` (:func:`~retrieval.evaluation.postprocess.alpha_query_expansion`).

    ``split.extra["gnd"]`` holds the per-query ground truth, indexing the gallery items in split
    order. Keys are ``"<setup>/<metric>"``, e.g. ``"medium/map"``, ``"hard/mp@10"``.
    """
    _, _, scores = revisited_scores(features, split, qe_k, qe_alpha)
    result = evaluate_revisited(scores, split.extra["gnd"], kappas)
    return {f"{setup}/{name}": value for setup, metrics in result.items() for name, value in metrics.items()}
