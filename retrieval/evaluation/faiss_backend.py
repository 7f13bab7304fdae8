"""faiss (``IndexFlatIP``) as an optional backend, giving exactly the torch path's neighbours and scores.

faiss computes float32 inner products whose last bits depend on its BLAS, blocking and threads, and
orders tied scores arbitrarily. So faiss only proposes candidates: each returned list is re-scored
with this package's exact grid arithmetic (see :mod:`retrieval.evaluation.knn`) and ordered by its
convention (decreasing score, ties by increasing gallery index). A candidate list provably holds
the exact top k when its k-th exact score exceeds faiss's last returned score by more than the
float32 error bound (:func:`float32_error_bound`); a row where it cannot be proven is recomputed by
the torch path.
"""
from __future__ import annotations

import numpy as np
import torch

from retrieval.evaluation.knn import Neighbours, block_shape, knn_torch, matmul_into, order_by_score, row_blocks

#: Candidates asked of faiss beyond k, so that the exact top k is usually provably among them.
EXTRA_CANDIDATES = 16


def float32_error_bound(dim: int) -> float:
    """Largest difference between faiss's float32 inner product of two grid rows and the exact one.

    A float32 dot product of unit vectors errs by at most ``gamma_D = D u / (1 - D u)`` (u = 2**-24)
    in any summation order, and casting the grid rows to float32 adds at most 2u; 2u per
    coordinate covers both with room to spare.
    """
    return (dim + 4) * 2.0**-23


def flat_index(gallery: torch.Tensor):
    try:
        import faiss
    except ImportError as error:
        raise ImportError("backend='faiss' needs faiss: pip install faiss-cpu (or faiss-gpu)") from error
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery.cpu().float().numpy()))
    return index


def search(index, query: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    scores, indices = index.search(np.ascontiguousarray(query.cpu().float().numpy()), k)
    return torch.from_numpy(scores).double(), torch.from_numpy(indices)


def rescore(query: torch.Tensor, gallery: torch.Tensor, candidates: torch.Tensor, budget: int) -> torch.Tensor:
    """(R, W) exact scores of query row r and gallery row ``candidates[r, w]``, about ``budget`` numbers at a time."""
    if candidates.shape[1] == len(gallery):  # every item: one exact product is cheaper than gathering
        scores = matmul_into(query.new_empty(len(query), len(gallery)), query, gallery)
        return scores.gather(1, candidates)
    rows = max(1, budget // max(candidates.shape[1] * gallery.shape[1], 1))
    return torch.cat([torch.einsum("rd,rwd->rw", query[part], gallery[candidates[part]])
                      for part in row_blocks(len(query), rows)])


def candidates_in_order(query, gallery, index, wanted: int, self_index, block: slice, block_size: int):
    """``(scores, indices, faiss_last)`` of the block's candidates, exactly re-scored and ordered,
    the query itself left out; ``faiss_last`` is faiss's lowest returned score per row."""
    faiss_scores, found = search(index, query[block], wanted)
    scores = rescore(query[block], gallery, found, block_size)
    if self_index is not None:
        scores = scores.masked_fill(found == self_index[block, None].cpu(), float("-inf"))
    scores, found = order_by_score(scores, found)
    return scores, found, faiss_scores[:, -1]


def faiss_knn(query: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor | None,
              block_size: int, index=None) -> Neighbours:
    """Exact kNN of grid rows with faiss proposing candidates, in query blocks of bounded size; ``index``:
    the :func:`flat_index` of ``gallery`` when one was built already (built here otherwise)."""
    query, gallery = query.cpu(), gallery.cpu()
    self_index = None if self_index is None else self_index.cpu()
    index = flat_index(gallery) if index is None else index
    wanted = min(k + EXTRA_CANDIDATES + (self_index is not None), len(gallery))
    slack = float32_error_bound(gallery.shape[1])
    rows, _ = block_shape(len(query), wanted, block_size)
    scores = torch.empty(len(query), k, dtype=torch.float64)
    indices = torch.empty(len(query), k, dtype=torch.int64)
    for block in row_blocks(len(query), rows):
        found_scores, found, faiss_last = candidates_in_order(query, gallery, index, wanted, self_index, block,
                                                              block_size)
        scores[block], indices[block] = found_scores[:, :k], found[:, :k]
        # Items faiss left out score at most faiss_last + slack exactly: the top k is proven when above that.
        unproven = (found_scores[:, k - 1] <= faiss_last + slack) if wanted < len(gallery) else \
            torch.zeros(len(found), dtype=torch.bool)
        redo = torch.arange(block.start, block.stop)[unproven]
        if len(redo):
            exact = knn_torch(query[redo], gallery, k, None if self_index is None else self_index[redo], block_size)
            scores[redo], indices[redo] = exact.scores, exact.indices
    return Neighbours(scores, indices)


def faiss_rankings(query: torch.Tensor, gallery: torch.Tensor, self_index: torch.Tensor | None, block_size: int):
    """Yield ``(rows, position)``: ``position[i, j]`` is gallery item j's 1-based place in query i's full ranking.

    The ranking is faiss's full answer (k = gallery size) re-scored exactly and ordered by the
    package's convention; in leave-one-out mode the query itself is taken out (its own entry is 0).
    Memory is about 20 bytes per result, ``block_size`` results per block.
    """
    query, gallery = query.cpu(), gallery.cpu()
    self_index = None if self_index is None else self_index.cpu()
    index = flat_index(gallery)
    n = len(gallery)
    rows, _ = block_shape(len(query), n, block_size)
    for block in row_blocks(len(query), rows):
        _, ranked, _ = candidates_in_order(query, gallery, index, n, self_index, block, block_size)
        position = torch.empty_like(ranked)
        position.scatter_(1, ranked, torch.arange(1, n + 1).expand_as(ranked).contiguous())
        if self_index is not None:  # the query was ordered last (score -inf): every other place stands
            position.scatter_(1, self_index[block, None], 0)
        yield block, position
