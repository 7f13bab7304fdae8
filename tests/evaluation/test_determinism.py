"""The same embeddings give the same neighbours and metrics whatever the block size, thread count and backend.

The features hold exact duplicates and near-ties (rows one float32 ulp apart, so their float32 scores
differ only in the last bits), in a dimension large enough for the BLAS kernels to block and split
their sums differently. The reference is integer arithmetic: the grid rows as int64, their inner
products exact, ranked by a full sort.
"""
import itertools

import numpy as np
import pytest
import torch

from retrieval.evaluation import per_query_metrics
from retrieval.evaluation.knn import SCORE_BITS, knn

BLOCK_SIZES = [10**9, 64 * 301, 1000]
THREADS = [1, 3]
BACKENDS = ["torch", "faiss"]
SETTINGS = list(itertools.product(BLOCK_SIZES, THREADS, BACKENDS))


def near_tied_features(n: int = 301, dim: int = 96, classes: int = 30, seed: int = 0):
    """Unit float32 rows (norms within 1e-6 of 1, kept as they are) with duplicates and one-ulp neighbours."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    x = rng.normal(size=(classes, dim))[labels] + 0.7 * rng.normal(size=(n, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    for i in range(0, 60, 3):  # pairs one ulp apart in one coordinate, and an exact duplicate of each
        x[i + 1] = x[i]
        x[i + 1, i % dim] = np.nextafter(x[i, i % dim], np.float32(2))
        x[i + 2] = x[i]
    x[100:110] = x[99]  # a run of ten duplicates, more than faiss's extra candidates for small k
    return x, labels


def integer_scores(x: np.ndarray) -> np.ndarray:
    grid = np.rint(x.astype(np.float64) * 2.0**SCORE_BITS).astype(np.int64)
    return grid @ grid.T  # exact: every product and partial sum is an integer below 2**63


def ranking(row: np.ndarray, exclude: int) -> np.ndarray:
    index = np.delete(np.arange(len(row)), exclude)
    return index[np.lexsort((index, -row[index]))]


def with_threads(threads: int, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with torch's thread count (the evaluation's worker and BLAS threads) at ``threads``."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    x, labels = near_tied_features()
    assert np.abs(np.linalg.norm(x.astype(np.float64), axis=1) - 1).max() < 1e-5
    return x, labels, integer_scores(x)


@pytest.mark.parametrize("k", [1, 5, 40])
def test_neighbours_identical_everywhere_and_exact(data, k):
    x, _, scores = data
    expected = np.stack([ranking(row, i)[:k] for i, row in enumerate(scores)])
    results = {(b, t, backend): with_threads(t, knn, x, k, block_size=b, backend=backend)
               for b, t, backend in SETTINGS}
    first = next(iter(results.values()))
    assert np.array_equal(first.indices.numpy(), expected)
    assert np.array_equal(first.scores.numpy() * 2.0 ** (2 * SCORE_BITS), np.take_along_axis(scores, expected, 1))
    for setting, found in results.items():
        assert torch.equal(found.indices, first.indices), setting
        assert torch.equal(found.scores, first.scores), setting


def test_metrics_identical_everywhere_and_exact(data, reference_metrics):
    x, labels, scores = data
    ks = (1, 4, 16)
    expected = reference_metrics(x, labels, ks=ks, scores=scores)
    results = {(b, t, backend): with_threads(t, per_query_metrics, x, labels, ks=ks, block_size=b, backend=backend)
               for b, t, backend in SETTINGS}
    first = next(iter(results.values()))
    assert first.means() == pytest.approx(expected, abs=1e-12)
    for setting, got in results.items():
        assert torch.equal(got.has_positives, first.has_positives), setting
        for name, values in first.values.items():
            assert torch.equal(got.values[name], values), (name, setting)


def test_exact_duplicates_tie_and_follow_gallery_index(data):
    x, _, _ = data
    for t in THREADS:
        found = with_threads(t, knn, x[99:110], 10, x, block_size=1000)
        # Query 99 + j: the other ten copies (99..109) first, all tied at one score, in index order.
        assert bool((found.scores == found.scores[0, 0]).all())
        assert found.indices.tolist() == [list(range(99, 109))] * 11
