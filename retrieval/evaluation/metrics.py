"""Retrieval metrics over the full ranking, computed in blocks without sorting any ranking.

Every metric here follows from the ranks of each query's positives (gallery items of its label)
in its full ranking (see :mod:`retrieval.evaluation.knn` for the ranking convention: decreasing
similarity, ties by increasing gallery index, the query itself left out in leave-one-out mode).
The rank of a positive with score t and index p is one plus the number of items j with
``s_j > t``, or ``s_j == t`` and ``j < p``; these are counts, so one block of similarities
(query rows against the whole gallery, or chunk by chunk) gives them without any sort.

With ``r_1 < ... < r_m`` the ranks of a query's m positives:

- ``recall@K``: 1 if ``r_1 <= K`` (a positive among the K nearest), else 0;
- ``precision@1``: 1 if ``r_1 == 1``;
- ``map``: average precision ``(1/m) sum_l l / r_l`` over the full ranking;
- ``map@r`` (Musgrave et al. 2020): ``(1/m) sum_{l: r_l <= m} l / r_l``;
- ``r_precision``: ``#{l: r_l <= m} / m``.

Each is averaged over the queries that have at least one positive. A query whose class has no
other member (or no gallery item) has nothing to find and is left out of every mean; the number
left out is reported by :func:`per_query_metrics`. If no query has a positive, it is an error.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from retrieval.evaluation.knn import (
    DEFAULT_BLOCK_SIZE,
    Scratch,
    as_labels,
    block_shape,
    cache_blocks,
    check_backend,
    exact_features,
    map_blocks,
    row_blocks,
    score_chunks,
    worker_count,
)

#: Up to this many thresholds per row are counted by direct comparisons; more by binary search.
DIRECT_THRESHOLDS = 8


class Positives:
    """Each query's positives: the gallery indices sharing its label (not itself, in leave-one-out)."""

    def __init__(self, query_labels: torch.Tensor, gallery_labels: torch.Tensor, self_index: torch.Tensor | None):
        self.order = torch.argsort(gallery_labels, stable=True)
        ordered = gallery_labels[self.order].contiguous()
        self.start = torch.searchsorted(ordered, query_labels)
        self.count = torch.searchsorted(ordered, query_labels, right=True) - self.start
        self.self_index = self_index

    def block(self, rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, valid)``, both (R, m): positives in increasing gallery index, padded where not valid."""
        start, count = self.start[rows], self.count[rows]
        width = int(count.max()) if len(count) else 0
        offset = torch.arange(width, device=start.device)
        valid = offset < count[:, None]
        index = self.order[(start[:, None] + offset).clamp(max=max(len(self.order) - 1, 0))] if width else \
            torch.zeros(len(count), 0, dtype=torch.int64, device=start.device)
        if self.self_index is not None:
            valid &= index != self.self_index[rows, None]
        return torch.where(valid, index, 0), valid


def greater_and_equal(scores: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and threshold: how many scores are greater than it, and how many equal it."""
    if thresholds.shape[1] == 0:
        return thresholds.long(), thresholds.long()
    if thresholds.shape[1] <= DIRECT_THRESHOLDS:
        greater = torch.stack([(scores > t).sum(1) for t in thresholds.T.unsqueeze(2)], 1)
        equal = torch.stack([(scores == t).sum(1) for t in thresholds.T.unsqueeze(2)], 1)
        return greater, equal
    # s > t  <=>  s ranks past both t and the float just below it; s >= t  <=>  s > below(t).
    below = torch.nextafter(thresholds, thresholds.new_tensor(float("-inf")))
    bounds = torch.cat([below, thresholds], 1).sort(dim=1).values
    bucket = torch.searchsorted(bounds, scores)  # how many bounds lie below each score
    histogram = torch.zeros(len(scores), bounds.shape[1] + 1, dtype=torch.int64, device=scores.device)
    histogram.scatter_add_(1, bucket, torch.ones_like(bucket))
    at_least = histogram.flip(1).cumsum(1).flip(1)  # at_least[:, b]: scores with bucket >= b

    def above(t):  # scores greater than t = scores past every bound <= t
        return at_least.gather(1, torch.searchsorted(bounds, t, right=True))

    greater = above(thresholds)
    return greater, above(below) - greater


def count_ranked_above(scores: torch.Tensor, thresholds: torch.Tensor, index: torch.Tensor,
                       start: int) -> torch.Tensor:
    """Per row and threshold: items of this gallery chunk ranked above gallery item ``index`` of score ``threshold``.

    ``scores`` are the chunk's similarities, its first column being gallery item ``start``;
    an item ranks above when its score is greater, or equal with a lower index.
    """
    greater, equal = greater_and_equal(scores, thresholds)
    local = index - start
    own = ((local >= 0) & (local < scores.shape[1])).long()
    rows, which = ((equal - own) > 0).nonzero(as_tuple=True)  # ties beyond the item itself: rare
    if len(rows):
        columns = torch.arange(scores.shape[1], device=scores.device)
        for part in row_blocks(len(rows), max(1, 2**22 // scores.shape[1])):
            r, w = rows[part], which[part]
            tied_before = (scores[r] == thresholds[r, w, None]) & (columns < local[r, w, None])
            greater[r, w] += tied_before.sum(1)
    return greater


class RankCounter:
    """The ranks of each query's positives, one block of queries at a time (see the module doc).

    Calling it on a block of query rows gives ``(ranks, valid)``, both (R, m): each query's
    positives' ranks, increasing, valid entries first. ``best_only``: the best positive's rank
    alone (m = 1), enough for Recall@K. When a block cannot hold whole gallery rows, the gallery
    is read in chunks twice: once for the positives' scores, once to count.
    """

    def __init__(self, query: torch.Tensor, gallery: torch.Tensor, positives: Positives,
                 self_index: torch.Tensor | None, block_size: int, best_only: bool):
        self.query, self.gallery, self.positives, self.self_index = query, gallery, positives, self_index
        self.best_only = best_only
        self.rows, self.columns = block_shape(len(query), len(gallery), block_size, worker_count(query.device))
        self.buffers = Scratch(self.rows * min(self.columns, len(gallery)), query.device)

    def blocks(self) -> Iterator[slice]:
        return row_blocks(len(self.query), self.rows)

    def _chunks(self, block: slice) -> Iterator[tuple[int, torch.Tensor]]:
        own = None if self.self_index is None else self.self_index[block]
        return score_chunks(self.query[block], self.gallery, self.columns, own, self.buffers.get())

    def __call__(self, block: slice) -> tuple[torch.Tensor, torch.Tensor]:
        index, valid = self.positives.block(block)
        chunks = self._chunks(block)
        if self.columns >= len(self.gallery):  # one pass: the positives' scores come from the same block
            chunk = next(chunks)
            thresholds = chunk[1].gather(1, index)
            chunks = iter([chunk])
        else:
            thresholds = torch.zeros(index.shape, dtype=self.gallery.dtype, device=index.device)
            for start, scores in self._chunks(block):
                inside = (index >= start) & (index < start + scores.shape[1])
                local = (index - start).clamp(0, scores.shape[1] - 1)
                thresholds = torch.where(inside, scores.gather(1, local), thresholds)
        # Positives by decreasing score, ties by increasing index (index is increasing already).
        thresholds, order = torch.where(valid, thresholds, float("-inf")).sort(dim=1, descending=True, stable=True)
        index, valid = index.gather(1, order), valid.gather(1, order)
        if self.best_only:
            thresholds, index, valid = thresholds[:, :1], index[:, :1], valid[:, :1]
        thresholds = torch.where(valid, thresholds, float("inf"))  # padding counts nothing
        ranks = torch.ones(index.shape, dtype=torch.int64, device=index.device)
        for start, scores in chunks:  # recomputed scores equal the thresholds exactly: grid arithmetic is exact
            for part in cache_blocks(scores):
                ranks[part] += count_ranked_above(scores[part], thresholds[part], index[part], start)
        return ranks, valid


@dataclass
class PerQuery:
    """Per-query metrics (float64, one entry per query); ``has_positives`` marks the queries that count."""

    values: dict[str, torch.Tensor]
    has_positives: torch.Tensor

    def means(self) -> dict[str, float]:
        counted = self.has_positives
        if not bool(counted.any()):
            raise ValueError("no query has a positive (another gallery item of its label); "
                             "retrieval metrics are undefined")
        return {name: float(value[counted].mean()) for name, value in self.values.items()}

    @property
    def num_without_positives(self) -> int:
        return int((~self.has_positives).sum())


def metrics_from_ranks(ranks: torch.Tensor, valid: torch.Tensor, ks: Sequence[int],
                       best_only: bool = False) -> dict[str, torch.Tensor]:
    """Per-query metrics from the increasing ranks of each query's positives (see the module doc)."""
    first = torch.where(valid[:, 0], ranks[:, 0], 0) if ranks.shape[1] else ranks.new_zeros(len(ranks))
    out = {f"recall@{k}": ((first >= 1) & (first <= k)).double() for k in ks}
    if best_only:
        return out
    count = valid.sum(1).clamp(min=1)
    place = valid.cumsum(1)  # l: the positive's place among positives
    precision = torch.where(valid, place.double() / ranks.double(), 0.0)
    within_r = valid & (ranks <= count[:, None])
    out["map"] = precision.sum(1) / count
    out["map@r"] = torch.where(within_r, precision, 0.0).sum(1) / count
    out["precision@1"] = (first == 1).double()
    out["r_precision"] = within_r.sum(1).double() / count
    return out


def _prepare(query, query_labels, gallery, gallery_labels):
    query = exact_features(query, "query")
    query_labels = as_labels(query_labels, len(query), "query_labels").to(query.device)
    if len(query) == 0 or (gallery is not None and len(gallery) == 0):
        raise ValueError("retrieval metrics need at least one query and one gallery item")
    if (gallery is None) != (gallery_labels is None):
        raise ValueError("give gallery and gallery_labels together (or neither, for leave-one-out)")
    if gallery is None:
        return query, query_labels, query, query_labels, torch.arange(len(query), device=query.device)
    gallery = exact_features(gallery, "gallery").to(query.device)
    gallery_labels = as_labels(gallery_labels, len(gallery), "gallery_labels").to(query.device)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query has dimension {query.shape[1]} but gallery has {gallery.shape[1]}")
    return query, query_labels, gallery, gallery_labels, None


def per_query_metrics(query, query_labels, gallery=None, gallery_labels=None, ks: Sequence[int] = (1, 2, 4, 8),
                      block_size: int = DEFAULT_BLOCK_SIZE, backend: str = "torch",
                      best_only: bool = False) -> PerQuery:
    """Every query's metrics (see :func:`retrieval_metrics`); ``best_only`` computes Recall@K alone, faster."""
    check_backend(backend)
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise ValueError(f"every K of Recall@K must be at least 1; got {ks}")
    query, query_labels, gallery, gallery_labels, self_index = _prepare(query, query_labels, gallery, gallery_labels)
    positives = Positives(query_labels, gallery_labels, self_index)

    def evaluate(ranks: torch.Tensor, valid: torch.Tensor):
        has_positives = valid.any(1) if valid.shape[1] else torch.zeros(len(valid), dtype=torch.bool)
        return metrics_from_ranks(ranks, valid, ks, best_only), has_positives

    if backend == "faiss":
        results = [evaluate(ranks, valid) for ranks, valid in
                   faiss_positive_ranks(query, gallery, positives, self_index, block_size)]
    else:
        counter = RankCounter(query, gallery, positives, self_index, block_size, best_only)
        results = list(map_blocks(lambda block: evaluate(*counter(block)), counter.blocks(), query.device))
    values = {name: torch.cat([r[0][name].cpu() for r in results]) for name in results[0][0]}
    return PerQuery(values, torch.cat([r[1].cpu() for r in results]))


def faiss_positive_ranks(query, gallery, positives: Positives, self_index, block_size: int):
    """Like :func:`positive_ranks`, from faiss's full ranking (slow: a full sort per query)."""
    from retrieval.evaluation.faiss_backend import faiss_rankings

    for block, position in faiss_rankings(query, gallery, self_index, block_size):
        index, valid = positives.block(block)
        ranks = torch.where(valid, position.gather(1, index.cpu()).to(index.device), len(gallery) + 1)
        ranks, order = ranks.sort(dim=1)
        yield ranks, valid.gather(1, order)


def retrieval_metrics(query, query_labels, gallery=None, gallery_labels=None, ks: Sequence[int] = (1, 2, 4, 8),
                      block_size: int = DEFAULT_BLOCK_SIZE, backend: str = "torch") -> dict[str, float]:
    """Recall@K, mAP (full ranking), MAP@R, precision@1 and R-precision, as fractions in [0, 1].

    ``query`` (Q, D) features and ``query_labels`` (Q,); ``gallery=None``: leave-one-out over the
    query set (each query's own row is removed by index; duplicates still count). Features are
    L2-normalised here and compared by their exact inner product (see :mod:`retrieval.evaluation.knn`),
    so the result does not depend on ``block_size`` (which bounds the similarities held at once), the
    thread count or the backend. ``backend="faiss"`` ranks with faiss's full sort per query, re-scored
    exactly (slow, for cross-checking).
    Queries without any positive are left out of the means (see the module doc).
    """
    result = per_query_metrics(query, query_labels, gallery, gallery_labels, ks, block_size, backend).means()
    return {f"recall@{int(k)}": result[f"recall@{int(k)}"] for k in ks} | {
        name: result[name] for name in ("map", "map@r", "precision@1", "r_precision")}


def recall_at_k(query, query_labels, gallery=None, gallery_labels=None, ks: Sequence[int] = (1, 2, 4, 8),
                block_size: int = DEFAULT_BLOCK_SIZE) -> dict[str, float]:
    """Recall@K alone (``recall@K`` keys), counting only each query's best positive: about twice as fast."""
    return per_query_metrics(query, query_labels, gallery, gallery_labels, ks, block_size, best_only=True).means()
