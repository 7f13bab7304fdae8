"""Brute-force float64 references (a full sort per query) and test data with ties and duplicates."""
import numpy as np
import pytest


def full_ranking(scores: np.ndarray, exclude: int | None = None) -> np.ndarray:
    """Gallery indices by decreasing score, equal scores by increasing index, ``exclude`` left out."""
    index = np.arange(len(scores))
    if exclude is not None:
        index = index[index != exclude]
    return index[np.lexsort((index, -scores[index]))]


def normalised64(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def brute_force_metrics(query, query_labels, gallery=None, gallery_labels=None, ks=(1, 2, 4, 8),
                        scores=None) -> dict:
    """Every metric from its textbook definition over each query's fully sorted gallery.

    ``scores`` (Q, G), when given, replaces the float64 similarities of the features.
    """
    leave_one_out = gallery is None
    if leave_one_out:
        gallery, gallery_labels = query, query_labels
    if scores is None:
        scores = normalised64(query) @ normalised64(gallery).T
    per_query = {**{f"recall@{k}": [] for k in ks}, "map": [], "map@r": [], "precision@1": [], "r_precision": []}
    for i, row in enumerate(scores):
        relevant = np.asarray(gallery_labels)[full_ranking(row, i if leave_one_out else None)] == query_labels[i]
        r = int(relevant.sum())
        if r == 0:
            continue
        hits = np.cumsum(relevant)
        precision_at = hits / np.arange(1, len(relevant) + 1)
        for k in ks:
            per_query[f"recall@{k}"].append(float(relevant[:k].any()))
        per_query["map"].append(float((precision_at * relevant).sum() / r))
        per_query["map@r"].append(float((precision_at[:r] * relevant[:r]).sum() / r))
        per_query["precision@1"].append(float(relevant[0]))
        per_query["r_precision"].append(float(relevant[:r].sum() / r))
    return {name: float(np.mean(values)) for name, values in per_query.items()}


def brute_force_knn(query, k, gallery=None):
    leave_one_out = gallery is None
    scores = normalised64(query) @ normalised64(query if leave_one_out else gallery).T
    return np.stack([full_ranking(row, i if leave_one_out else None)[:k] for i, row in enumerate(scores)])


def well_separated(features: np.ndarray, labels: np.ndarray | None = None, gap: float = 2e-6) -> bool:
    """Whether float32 arithmetic keeps the float64 order that matters: no two distinct scores of a row
    closer than ``gap``, among all items, or (given labels) between a positive and a non-positive."""
    scores = normalised64(features) @ normalised64(features).T
    for i, row in enumerate(scores):
        if labels is None:
            steps = np.diff(np.sort(row))
            close = (steps > 0) & (steps <= gap)
        else:
            same = labels == labels[i]
            difference = np.abs(row[same][:, None] - row[~same][None, :])
            close = (difference > 0) & (difference <= gap)
        if close.any():
            return False
    return True


def clustered_features(seed: int, n: int = 240, dim: int = 8, classes: int = 40, separate_all: bool = False):
    """Random class-structured float32 unit vectors with exact duplicates (within and across classes)
    and classes of a single member, redrawn until float32 cannot change the order (see well_separated)."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        labels = rng.integers(0, classes, n)
        labels[:3] = [classes, classes + 1, classes + 2]  # three classes of one member each
        x = rng.normal(size=(classes + 3, dim))[labels] + rng.normal(size=(n, dim))
        x[10] = x[11]  # duplicate within a class
        labels[11] = labels[10]
        x[20] = x[21]  # duplicate across classes
        labels[21] = (labels[20] + 1) % classes
        x[30] = x[0]  # duplicate of a singleton's item
        x = normalised64(x).astype(np.float32)
        if well_separated(x, None if separate_all else labels):
            return x, labels
    raise AssertionError("could not draw well-separated features")


def tied_features(seed: int, n: int = 200, dim: int = 4, classes: int = 6):
    """Exactly representable unit vectors (coordinates 0, +-1/2, +-1): scores are multiples of 1/4, ties abound."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, dim), dtype=np.float32)
    one_hot = rng.random(n) < 0.5
    x[np.flatnonzero(one_hot), rng.integers(0, dim, one_hot.sum())] = rng.choice([-1.0, 1.0], one_hot.sum())
    x[~one_hot] = rng.choice([-0.5, 0.5], size=((~one_hot).sum(), dim))
    return x, rng.integers(0, classes, n)


@pytest.fixture
def reference_metrics():
    return brute_force_metrics


@pytest.fixture
def reference_knn():
    return brute_force_knn


@pytest.fixture
def clustered():
    return clustered_features


@pytest.fixture
def tied():
    return tied_features
