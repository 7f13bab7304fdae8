import importlib

import numpy as np
import pytest
import torch

from retrieval.evaluation.knn import as_features, block_shape, knn

# The module itself: the package exports the function ``knn`` under the same name.
knn_module = importlib.import_module("retrieval.evaluation.knn")

BLOCK_SIZES = [10**9, 64 * 30, 500, 37]


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_leave_one_out_matches_brute_force(clustered, reference_knn, block_size):
    x, _ = clustered(seed=10, n=80, separate_all=True)
    found = knn(x, 25, block_size=block_size)
    assert torch.equal(found.indices, torch.as_tensor(reference_knn(x, 25)))
    x64 = x.astype(np.float64)
    expected_scores = np.take_along_axis(x64 @ x64.T, found.indices.numpy(), 1)
    assert torch.allclose(found.scores, torch.as_tensor(expected_scores), atol=1e-6)
    assert bool((found.scores[:, :-1] >= found.scores[:, 1:]).all())


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_query_gallery_matches_brute_force(clustered, reference_knn, block_size):
    x, _ = clustered(seed=11, n=80, separate_all=True)
    found = knn(x[:30], 50, x[30:], block_size=block_size)
    assert torch.equal(found.indices, torch.as_tensor(reference_knn(x[:30], 50, x[30:])))


@pytest.mark.parametrize("block_size", [10**9, 64 * 40, 300])
@pytest.mark.parametrize("k", [1, 13, 199])
def test_ties_are_broken_by_gallery_index(tied, reference_knn, block_size, k):
    """Scores are multiples of 1/4, so most cuts fall inside a run of equal scores."""
    x, _ = tied(seed=k)
    assert torch.equal(knn(x, k, block_size=block_size).indices, torch.as_tensor(reference_knn(x, k)))


def test_duplicates_of_the_query_are_neighbours():
    x = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    assert knn(x, 2).indices.tolist() == [[2, 3], [0, 2], [0, 3], [0, 2]]


def test_memory_is_bounded_by_the_block_size(tied, monkeypatch):
    shapes = []
    matmul = knn_module.matmul_into
    monkeypatch.setattr(knn_module, "matmul_into", lambda out, q, g: shapes.append(out.shape) or matmul(out, q, g))
    x, _ = tied(seed=0)
    knn(x, 5, block_size=1000)
    assert shapes and max(rows * columns for rows, columns in shapes) <= 1000
    assert sum(rows * columns for rows, columns in shapes) == len(x) ** 2  # each score exactly once


@pytest.mark.parametrize("n_query, n_gallery, block_size, workers", [
    (10, 10, 1, 1), (1000, 60502, 2**25, 2), (1000, 10**7, 2**25, 2), (3, 5, 8, 1), (500, 500, 64 * 500, 4)])
def test_block_shape_respects_the_budget(n_query, n_gallery, block_size, workers):
    rows, columns = block_shape(n_query, n_gallery, block_size, workers)
    assert 1 <= rows <= n_query and 1 <= columns
    assert workers * rows * min(columns, n_gallery) <= max(block_size, workers)


def test_k_out_of_range_is_an_error():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="between 1 and 2"):
        knn(x, 3)
    with pytest.raises(ValueError, match="between 1 and 3"):
        knn(x, 0, x)


def test_features_are_validated_and_normalised():
    with pytest.raises(ValueError, match="row 1 holds NaN"):
        as_features(np.array([[1.0, 0.0], [np.inf, 0.0]]))
    with pytest.raises(ValueError, match="floating point"):
        as_features(np.eye(2, dtype=np.int64))
    x = as_features(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert x.dtype == torch.float32 and torch.equal(x, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    unit = torch.nn.functional.normalize(torch.randn(5, 3), dim=1)
    assert torch.equal(as_features(unit), unit)  # unit rows are kept bit for bit
