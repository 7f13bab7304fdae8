"""Exact k-nearest neighbours by inner product, in blocks whose memory a setting bounds.

Features are L2-normalised rows, so the inner product is the cosine similarity. The similarities
are computed one block of ``rows x columns`` at a time, ``rows * columns <= block_size``, so memory
never depends on the product of the dataset sizes: the full N x N matrix is never held.

Exact scores. A float32 (or float64) matrix product rounds its partial sums in an order that depends
on the block shape, the BLAS kernel and its thread count, so two runs could give the same pair
similarities differing in the last bit, and swap near-tied or even exactly duplicated neighbours.
Here every unit row is first rounded to a fixed-point grid of ``SCORE_BITS`` = 26 fractional bits
(:func:`exact_features`, error at most 2**-27 per coordinate) and the products are taken in float64:
each coordinate product is a multiple of 2**-52 below 1, and by Cauchy-Schwarz every partial sum, in
any order, stays below 2 in magnitude, so every partial sum is exactly representable and the result
is the exact inner product of the grid rows. Scores therefore do not depend on block size, thread
count, BLAS or device, exact duplicates tie exactly, and ties are broken by gallery index.

Ranking convention, shared by every metric of this package: gallery items are ordered by
decreasing similarity, and items of equal similarity by increasing gallery index. In leave-one-out
mode (no gallery: the query set searched against itself) each query is removed from its own
ranking by index, so an exact duplicate of the query is still a neighbour.

On CPU the similarities come from numpy's BLAS and blocks are spread over torch's thread count
of worker threads, each running single-threaded kernels (see :func:`map_blocks`); on a GPU
everything is torch on the features' device.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

import numpy as np
import torch
from threadpoolctl import threadpool_limits

T = TypeVar("T")

#: Default for ``block_size``: the most similarities held at once (2**24 float64 = 128 MiB).
DEFAULT_BLOCK_SIZE = 2**24
#: Fractional bits of the grid features are rounded to before scoring (see the module doc).
SCORE_BITS = 26
#: Fewest query rows per block before the gallery is cut into chunks: thinner blocks waste the GEMM.
MIN_ROWS = 64
#: Rows of a block are post-processed this many scores at a time, so repeated passes stay in cache.
CACHE_SCORES = 2**19
BACKENDS = ("torch", "faiss")


class Neighbours(NamedTuple):
    """``scores`` (Q, k) float64 exact grid similarities and ``indices`` (Q, k) int64 gallery indices, best first."""

    scores: torch.Tensor
    indices: torch.Tensor


def as_features(x, name: str = "features") -> torch.Tensor:
    """``x`` (a tensor or array of shape (N, D)) as contiguous L2-normalised float32 rows.

    Rows already of unit norm (within 1e-5) are used as they are; otherwise every row is divided
    by its norm. A zero row stays zero (its similarity to everything is 0). The norms are taken by
    numpy in float64, one row at a time, so a row's result never depends on its neighbours or on
    the thread count.
    """
    x = torch.as_tensor(x).detach()
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D); got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be floating point; got {x.dtype}")
    rows = x.cpu().double().numpy()
    norms = np.sqrt(np.square(rows).sum(axis=1))
    if not np.isfinite(norms).all():
        bad = int(np.flatnonzero(~np.isfinite(norms))[0])
        raise ValueError(f"{name} row {bad} holds NaN or infinity (or values whose norm overflows)")
    if len(x) and float(np.abs(norms - 1).max()) <= 1e-5:
        return x.float().contiguous()
    unit = rows / np.maximum(norms, 1e-12)[:, None]
    return torch.from_numpy(unit.astype(np.float32)).to(x.device)


def exact_features(x, name: str = "features") -> torch.Tensor:
    """``x`` (N, D) as unit rows rounded to the scoring grid: float64 multiples of 2**-SCORE_BITS.

    Inner products of these rows are exact in float64 whatever the summation order (see the module
    doc), so they are what every score of this package is. Rounding is idempotent.
    """
    unit = as_features(x, name).double()
    return torch.round(unit * 2.0**SCORE_BITS) * 2.0**-SCORE_BITS


def exact_scores(query, gallery) -> torch.Tensor:
    """(Q, G) float64 exact similarities of the grid rows of ``query`` (Q, D) and ``gallery`` (G, D).

    For small query sets (the revisited protocol); a large evaluation goes through :func:`knn` or
    :mod:`retrieval.evaluation.metrics`, which never hold the whole matrix.
    """
    query, gallery = exact_features(query, "query"), exact_features(gallery, "gallery")
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query has dimension {query.shape[1]} but gallery has {gallery.shape[1]}")
    return matmul_into(query.new_empty(len(query), len(gallery)), query, gallery)


def as_labels(labels, n: int, name: str) -> torch.Tensor:
    """``labels`` as an int64 vector of length ``n``."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"{name} must be a vector of {n} labels (one per row); got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{name} must be integers; got {labels.dtype}")
    return labels.to(torch.int64)


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown kNN backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def block_shape(n_query: int, n_gallery: int, block_size: int, workers: int = 1) -> tuple[int, int]:
    """(query rows, gallery columns) of a block: ``workers`` blocks hold at most ``block_size`` similarities,
    and there are at least ``workers`` blocks when there are that many queries.

    Whole gallery rows when ``MIN_ROWS`` of them fit; otherwise ``MIN_ROWS`` rows against gallery chunks.
    """
    if int(block_size) < 1:
        raise ValueError(f"block_size must be a positive number of similarities; got {block_size}")
    block_size = max(1, int(block_size) // workers)
    n_gallery = max(n_gallery, 1)
    min_rows = max(1, min(n_query, MIN_ROWS))
    share = max(1, -(-n_query // workers))  # at least one block per worker
    if n_gallery * min_rows <= block_size:
        return max(1, min(share, block_size // n_gallery)), n_gallery
    rows = min(min_rows, block_size, share)
    return rows, max(1, block_size // rows)


def worker_count(device: torch.device) -> int:
    """Blocks evaluated at once: torch's thread count on CPU, one on an accelerator."""
    return torch.get_num_threads() if device.type == "cpu" else 1


@contextlib.contextmanager
def kernel_threads(torch_threads: int, blas_threads: int):
    """torch's and the BLAS's thread counts for the duration.

    numpy's BLAS (for the similarities) and torch (for the rest) have separate thread pools;
    alternating between them with several threads each made both spin and wait for each other
    (5x slower on 2 cores). So at most one of them runs several threads at a time.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with threadpool_limits(blas_threads, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def map_blocks(fn: Callable[[slice], T], blocks: Iterable[slice], device: torch.device) -> Iterator[T]:
    """``fn`` over ``blocks``, results in order.

    On CPU, with torch's thread count T: min(T, blocks) worker threads, each block on one core;
    a single block gets T BLAS threads and single-threaded torch.
    """
    blocks = list(blocks)
    if device.type != "cpu":
        yield from map(fn, blocks)
        return
    threads = worker_count(device)
    workers = min(threads, len(blocks))
    if workers <= 1:
        with kernel_threads(1, threads):
            yield from map(fn, blocks)
        return
    with kernel_threads(1, 1), ThreadPoolExecutor(workers) as pool:
        yield from pool.map(fn, blocks)


class Scratch:
    """One reusable float64 buffer of ``size`` elements per thread, for one evaluation (freed with it)."""

    def __init__(self, size: int, device: torch.device):
        self.size, self.device, self._local = size, device, threading.local()

    def get(self) -> torch.Tensor:
        buffer = getattr(self._local, "buffer", None)
        if buffer is None:
            buffer = self._local.buffer = torch.empty(self.size, dtype=torch.float64, device=self.device)
        return buffer


def matmul_into(out: torch.Tensor, query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """``out = query @ gallery.T``.

    On CPU through numpy's BLAS (OpenBLAS), which was faster than this torch build's MKL on the AMD
    CPUs we measured (see benchmarks/knn.py); on other devices torch.mm. On grid rows (see
    :func:`exact_features`) the result is exact, so the kernel's blocking and threads do not matter.
    """
    if out.device.type == "cpu":
        np.matmul(query.numpy(), gallery.numpy().T, out=out.numpy())
    else:
        torch.mm(query, gallery.T, out=out)
    return out


def score_chunks(query: torch.Tensor, gallery: torch.Tensor, columns: int, self_index: torch.Tensor | None,
                 buffer: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """``(first column, similarities)`` of ``query`` against consecutive chunks of ``columns`` gallery rows.

    ``self_index[i]`` is the gallery index of query ``i`` itself (leave-one-out), whose similarity
    becomes -inf. The similarities live in ``buffer`` and are overwritten by the next chunk.
    """
    for start in range(0, len(gallery), columns):
        chunk = gallery[start:start + columns]
        scores = buffer[: len(query) * len(chunk)].view(len(query), len(chunk))
        matmul_into(scores, query, chunk)
        if self_index is not None:
            local = self_index - start
            inside = ((local >= 0) & (local < len(chunk))).nonzero().squeeze(1)
            scores[inside, local[inside]] = float("-inf")
        yield start, scores


def row_blocks(n: int, rows: int) -> Iterator[slice]:
    return (slice(start, min(start + rows, n)) for start in range(0, n, rows))


def cache_blocks(scores: torch.Tensor) -> Iterator[slice]:
    """Row slices of ``scores`` small enough to stay in cache across several passes."""
    return row_blocks(len(scores), max(1, CACHE_SCORES // max(scores.shape[1], 1)))


def order_by_score(scores: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's entries by decreasing score, then increasing index."""
    indices, by_index = indices.sort(dim=1)
    scores = scores.gather(1, by_index)
    scores, by_score = scores.sort(dim=1, descending=True, stable=True)
    return scores, indices.gather(1, by_score)


def top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best columns of each row (ties: lower column first), best first.

    ``torch.topk`` picks arbitrarily among values tied at the k-th place; rows where such a tie
    crosses the cut are redone with a stable sort of the whole row.
    """
    values, columns = scores.topk(k, dim=1, sorted=False)
    crossing = ((scores >= values.amin(1, keepdim=True)).sum(1) > k).nonzero().squeeze(1)
    if len(crossing):
        exact_values, exact_columns = scores[crossing].sort(dim=1, descending=True, stable=True)
        values[crossing], columns[crossing] = exact_values[:, :k], exact_columns[:, :k]
    return order_by_score(values, columns)


def knn_torch(query: torch.Tensor, gallery: torch.Tensor, k: int, self_index: torch.Tensor | None,
              block_size: int) -> Neighbours:
    rows, columns = block_shape(len(query), len(gallery), block_size, worker_count(query.device))
    buffers = Scratch(rows * min(columns, len(gallery)), query.device)

    def search_block(block: slice) -> tuple[torch.Tensor, torch.Tensor]:
        buffer = buffers.get()
        block_self = None if self_index is None else self_index[block]
        best = None
        for start, chunk in score_chunks(query[block], gallery, columns, block_self, buffer):
            found = [top_k(chunk[part], min(k, chunk.shape[1])) for part in cache_blocks(chunk)]
            found = torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found]) + start
            if best is not None:
                found = order_by_score(torch.cat([best[0], found[0]], 1), torch.cat([best[1], found[1]], 1))
            best = found[0][:, :k], found[1][:, :k]
        return best

    found = list(map_blocks(search_block, row_blocks(len(query), rows), query.device))
    return Neighbours(torch.cat([f[0] for f in found]), torch.cat([f[1] for f in found]))


def knn(query, k: int, gallery=None, block_size: int = DEFAULT_BLOCK_SIZE, backend: str = "torch") -> Neighbours:
    """The ``k`` nearest gallery items of every query, exactly, best first (see the module's ranking convention).

    ``gallery=None``: leave-one-out over ``query`` (each query's own row is excluded by index).
    ``block_size`` bounds the similarities held at once. ``backend="faiss"`` finds candidates with
    faiss's ``IndexFlatIP`` and returns the same neighbours and scores (see
    :mod:`retrieval.evaluation.faiss_backend`).
    """
    check_backend(backend)
    query = exact_features(query, "query")
    leave_one_out = gallery is None
    gallery = query if leave_one_out else exact_features(gallery, "gallery").to(query.device)
    if query.shape[1] != gallery.shape[1]:
        raise ValueError(f"query has dimension {query.shape[1]} but gallery has {gallery.shape[1]}")
    available = len(gallery) - leave_one_out
    if not 1 <= k <= available:
        raise ValueError(f"k={k} must be between 1 and {available}, the number of gallery items per query")
    self_index = torch.arange(len(query), device=query.device) if leave_one_out else None
    if backend == "faiss":
        from retrieval.evaluation.faiss_backend import faiss_knn

        return faiss_knn(query, gallery, k, self_index, block_size)
    return knn_torch(query, gallery, k, self_index, block_size)
