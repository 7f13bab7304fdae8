"""The faiss backend gives exactly what the torch path gives, including every tie."""
import numpy as np
import pytest
import torch

from retrieval.evaluation import retrieval_metrics
from retrieval.evaluation.knn import knn


@pytest.mark.parametrize("k", [1, 10, 79])
def test_knn_same_as_torch_on_random_data(clustered, k):
    x, _ = clustered(seed=20, n=80, separate_all=True)
    ours, theirs = knn(x, k), knn(x, k, backend="faiss")
    assert torch.equal(ours.indices, theirs.indices)
    assert torch.allclose(ours.scores, theirs.scores, atol=1e-6)
    k = min(k, 60)
    gallery_ours, gallery_theirs = knn(x[:20], k, x[20:]), knn(x[:20], k, x[20:], backend="faiss")
    assert torch.equal(gallery_ours.indices, gallery_theirs.indices)


@pytest.mark.parametrize("k", [1, 7, 50, 199])
def test_knn_same_as_torch_with_ties_at_the_cut(tied, k):
    """Scores in multiples of 1/4: faiss's arbitrary order among ties must be brought to index order."""
    x, _ = tied(seed=k)
    ours = knn(x, k, block_size=64 * 50)
    for block_size in (10**9, 500):
        theirs = knn(x, k, backend="faiss", block_size=block_size)
        assert torch.equal(ours.indices, theirs.indices)
        assert torch.equal(ours.scores, theirs.scores)  # multiples of 1/4 are exact in both


@pytest.mark.parametrize("make", ["clustered", "tied"])
def test_metrics_same_as_torch(make, request):
    x, labels = request.getfixturevalue(make)(seed=21)
    ours = retrieval_metrics(x, labels, ks=(1, 5, 50))
    theirs = retrieval_metrics(x, labels, ks=(1, 5, 50), backend="faiss", block_size=2000)
    assert theirs == pytest.approx(ours, abs=1e-12)
    query_gallery = retrieval_metrics(x[:50], labels[:50], x[50:], labels[50:], backend="faiss")
    assert query_gallery == pytest.approx(retrieval_metrics(x[:50], labels[:50], x[50:], labels[50:]), abs=1e-12)


def test_query_absent_from_faiss_window_is_handled():
    """More exact copies of a query than the window holds: the query may fall outside faiss's answer."""
    x = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (12, 1))
    x[-1] = [0.0, 1.0]
    assert torch.equal(knn(x, 3, backend="faiss").indices, knn(x, 3).indices)
