"""The Revisited Oxford and Paris protocol (Radenovic et al., CVPR 2018), as its benchmark code defines it.

Three setups, each a choice of positive and ignored database images per query:

- Easy: positives ``easy``; ignored ``junk`` and ``hard``;
- Medium: positives ``easy`` and ``hard``; ignored ``junk``;
- Hard: positives ``hard``; ignored ``junk`` and ``easy``.

Ignored images are taken out of the ranking (an image listed both as positive and ignored counts
as positive). With ``r_0 < r_1 < ...`` the 0-based places of the m positives in what remains, the
average precision is the trapezoid rule over recall steps of 1/m,
``sum_j ((j / r_j if r_j > 0 else 1) + (j + 1) / (r_j + 1)) / (2m)``, and mP@k is the precision
at ``k' = min(k, 1 + r_{m-1})``: k capped at the 1-based rank of the last positive. Queries
without positives in a setup are left out of that setup's means. The database is ranked by
decreasing score, equal scores by increasing database index.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

SETUPS = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def average_precision(places: np.ndarray) -> float:
    """Trapezoid-rule AP from the increasing 0-based places of all positives in the ranking."""
    found = np.arange(len(places))
    before = np.where(places > 0, found / np.maximum(places, 1), 1.0)
    after = (found + 1) / (places + 1)
    return float(((before + after) / 2).sum() / len(places))


def precision_at(places: np.ndarray, k: int) -> float:
    """Precision at k capped at the 1-based rank of the last positive."""
    cut = min(k, int(places[-1]) + 1)
    return float((places < cut).sum() / cut)


def _indices(entry: Mapping, keys: Sequence[str], query: int, n_database: int) -> np.ndarray:
    parts = []
    for key in keys:
        if key not in entry:
            raise KeyError(f"gnd[{query}] has no {key!r}; each entry needs 'easy', 'hard' and 'junk' index lists")
        index = np.asarray(entry[key], dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= n_database):
            raise ValueError(f"gnd[{query}][{key!r}] holds indices outside the database 0..{n_database - 1}")
        parts.append(index)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def positive_places(order: np.ndarray, positives: np.ndarray, ignored: np.ndarray) -> np.ndarray:
    """0-based places of ``positives`` in the ranking ``order`` once the ``ignored`` images are taken out."""
    kind = np.zeros(len(order), dtype=np.int8)
    kind[ignored] = -1
    kind[positives] = 1
    ranked = kind[order]
    return np.flatnonzero(ranked[ranked >= 0] == 1)


def evaluate_revisited(scores, gnd: Sequence[Mapping],
                       kappas: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """``{"easy"|"medium"|"hard": {"map", "mp@k" for k in kappas}}`` as fractions.

    ``scores``: (n_queries, n_database) similarities; ``gnd``: per query a dict with ``easy``,
    ``hard`` and ``junk`` database indices (``bbx`` is not used here).
    """
    scores = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must have shape (n_queries, n_database); got {scores.shape}")
    if len(gnd) != len(scores):
        raise ValueError(f"scores has {len(scores)} query rows but gnd has {len(gnd)} entries")
    if not np.isfinite(scores).all():
        raise ValueError("scores hold NaN or infinity")
    kappas = [int(k) for k in kappas]
    if any(k < 1 for k in kappas):
        raise ValueError(f"every k of mP@k must be at least 1; got {kappas}")
    n_database = scores.shape[1]
    per_setup = {name: [] for name in SETUPS}
    for query, entry in enumerate(gnd):
        order = np.argsort(-scores[query], kind="stable")
        for name, (positive_keys, ignored_keys) in SETUPS.items():
            positives = _indices(entry, positive_keys, query, n_database)
            if not len(positives):
                continue
            places = positive_places(order, positives, _indices(entry, ignored_keys, query, n_database))
            per_setup[name].append([average_precision(places)] + [precision_at(places, k) for k in kappas])
    result = {}
    for name, rows in per_setup.items():
        if not rows:
            raise ValueError(f"no query has a positive in the {name!r} setup, so its metrics are undefined")
        means = np.mean(rows, axis=0)
        result[name] = {"map": float(means[0])} | {f"mp@{k}": float(v) for k, v in zip(kappas, means[1:])}
    return result
