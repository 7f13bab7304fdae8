"""faiss (``IndexFlatIP``, exact) as an optional backend, giving the same results as the torch path.

faiss orders tied scores arbitrarily, so its answers are brought to this package's convention
(ties by increasing gallery index): ties inside a result list are re-sorted, and a row whose k-th
and (k+1)-th scores tie (the cut could fall either side of an equal item) is recomputed by the
torch path. faiss computes the same float32 inner products with its own BLAS, so scores may differ
from torch's in the last bit; orders can then differ only between items closer than that.
"""
from __future__ import annotations

import numpy as np
import torch

from retrieval.evaluation.knn import Neighbours, block_shape, knn_torch, order_by_score, row_blocks


def flat_index(gallery: torch.Tensor):
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu)") from error
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery.cpu().numpy()))
    return index


def search(index, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores, indices = index.search(np.ascontiguousarray(query.cpu().numpy()), k)
    return torch.from_numpy(scores), torch.from_numpy(indices)


def drop_self(scores: torch.Tensor, indices: torch.Tensor, self_index: torch.Tensor):
    """Each row without its query's own index, or without its last entry where the query is absent."""
    drop = indices == self_index[:, None]
    drop[:, -1] |= ~drop.any(1)
    keep = ~drop
    width = indices.shape[1] - 1
    return scores[keep].view(-1, width), indices[keep].view(-1, width)


def faiss_knn(query: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor | None,
              block_size: int, index=None) -> Neighbours:
    """Exact kNN with faiss, in query blocks of at most ``block_size`` results; ``index``: the
    :func:`flat_index` of ``gallery`` when one was built already (built here otherwise)."""
    index = flat_index(gallery) if index is None else index
    # One extra neighbour to see a tie across the cut, one more for the query itself.
    wanted = min(k + 1 + (self_index is not None), len(gallery))
    rows, _ = block_shape(len(query), wanted, block_size)
    scores = torch.empty(len(query), k)
    indices = torch.empty(len(query), k, dtype=torch.int64)
    for block in row_blocks(len(query), rows):
        found_scores, found = search(index, query[block], wanted)
        if self_index is not None:
            found_scores, found = drop_self(found_scores, found, self_index[block].cpu())
        tied_at_cut = torch.zeros(len(found), dtype=torch.bool)
        if found.shape[1] > k:
            tied_at_cut = found_scores[:, k - 1] == found_scores[:, k]
        scores[block], indices[block] = order_by_score(found_scores[:, :k], found[:, :k])
        redo = tied_at_cut.nonzero().squeeze(1)
        if len(redo):
            rows_redone = torch.arange(block.start, block.stop)[redo]
            exact = knn_torch(query[rows_redone], gallery, k, None if self_index is None else self_index[rows_redone],
                              block_size)
            scores[rows_redone], indices[rows_redone] = exact.scores.cpu(), exact.indices.cpu()
    return Neighbours(scores.to(query.device), indices.to(query.device))


def faiss_rankings(query: torch.Tensor, gallery: torch.Tensor, self_index: torch.Tensor | None, block_size: int):
    """Yield ``(rows, position)``: ``position[i, j]`` is gallery item j's 1-based place in query i's full ranking.

    The ranking is faiss's full sort (k = gallery size) with ties put in index order; in
    leave-one-out mode the query itself is taken out (its own entry is 0). Memory is about
    12 bytes per result, ``block_size`` results per block.
    """
    index = flat_index(gallery)
    n = len(gallery)
    rows, _ = block_shape(len(query), n, block_size)
    for block in row_blocks(len(query), rows):
        scores, ranked = search(index, query[block], n)
        _, ranked = order_by_score(scores, ranked)
        position = torch.empty_like(ranked)
        position.scatter_(1, ranked, torch.arange(1, n + 1).expand_as(ranked).contiguous())
        if self_index is not None:
            own = self_index[block].cpu()[:, None]
            position -= (position > position.gather(1, own)).long()
            position.scatter_(1, own, 0)
        yield block, position
