import math

import numpy as np
import pytest
import torch

from retrieval.evaluation import per_query_metrics, recall_at_k, retrieval_metrics
from retrieval.evaluation.metrics import DIRECT_THRESHOLDS

# Whole rows in one block; several row blocks of whole rows; gallery chunks (read twice), uneven or tiny.
BLOCK_SIZES = [10**9, 80 * 240, 64 * 100, 500]


def assert_same(got: dict, expected: dict):
    assert list(got) == list(expected)
    for name in expected:
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_leave_one_out_matches_brute_force(clustered, reference_metrics, block_size):
    x, labels = clustered(seed=0)
    assert_same(retrieval_metrics(x, labels, block_size=block_size), reference_metrics(x, labels))


@pytest.mark.parametrize("block_size", [10**9, 500])
def test_query_gallery_matches_brute_force(clustered, reference_metrics, block_size):
    x, labels = clustered(seed=1)
    query, gallery = x[:90], x[90:]
    query_labels, gallery_labels = labels[:90].copy(), labels[90:]
    query_labels[5] = 10**6  # a query whose class is absent from the gallery
    got = retrieval_metrics(query, query_labels, gallery, gallery_labels, block_size=block_size)
    assert_same(got, reference_metrics(query, query_labels, gallery, gallery_labels))


@pytest.mark.parametrize("classes", [60, 4], ids=["few-positives", "many-positives"])
@pytest.mark.parametrize("block_size", [10**9, 64 * 50, 300])
def test_exact_ties_follow_gallery_index(tied, reference_metrics, classes, block_size):
    """Scores are multiples of 1/4: ties everywhere, broken by gallery index like a stable sort."""
    x, labels = tied(seed=classes, classes=classes)
    got = retrieval_metrics(x, labels, block_size=block_size)
    assert_same(got, reference_metrics(x, labels))


@pytest.mark.parametrize("make", ["clustered", "tied"])
def test_blocked_equals_unblocked_per_query(make, request):
    x, labels = request.getfixturevalue(make)(seed=7)
    whole = per_query_metrics(x, labels, ks=(1, 3, 30))
    for block_size in (80 * len(x), 64 * 33, 100):
        blocked = per_query_metrics(x, labels, ks=(1, 3, 30), block_size=block_size)
        assert torch.equal(blocked.has_positives, whole.has_positives)
        assert all(torch.equal(blocked.values[name], whole.values[name]) for name in whole.values)


def test_both_counting_paths_are_exercised(tied):
    _, few = tied(seed=60, classes=60)
    _, many = tied(seed=4, classes=4)
    assert np.bincount(few).max() - 1 <= DIRECT_THRESHOLDS < np.bincount(many).max() - 1


def test_duplicates_of_the_query_still_count():
    """Leave-one-out removes the query by index, not by value: its exact copy is its nearest neighbour."""
    x = np.array([[1, 0], [1, 0], [0.6, 0.8]], dtype=np.float32)
    got = per_query_metrics(x, [0, 0, 1], ks=(1,))
    assert got.values["recall@1"][:2].tolist() == [1.0, 1.0]
    assert not bool(got.has_positives[2])


def test_hand_computed_average_precision():
    # Query [1, 0]; gallery by decreasing score: positive (1.0), negative (0.8), positive (0.6), negative (0).
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    gallery = np.array([[0.6, 0.8], [0.0, 1.0], [1.0, 0.0], [0.8, 0.6]], dtype=np.float32)
    got = retrieval_metrics(query, [7], gallery, [7, 3, 7, 3], ks=(1, 2, 3))
    assert got["recall@1"] == 1.0 and got["precision@1"] == 1.0
    assert got["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert got["map@r"] == pytest.approx((1 / 1) / 2)  # R = 2: only the first positive lies in the top 2
    assert got["r_precision"] == pytest.approx(1 / 2)


def test_queries_without_positives_are_left_out(clustered, reference_metrics):
    x, labels = clustered(seed=2)
    result = per_query_metrics(x, labels)
    singletons = np.bincount(labels)[labels] == 1
    assert result.num_without_positives == int(singletons.sum()) >= 3
    assert torch.equal(result.has_positives, torch.as_tensor(~singletons))
    means = result.means()
    assert all(math.isfinite(v) for v in means.values())
    assert means == pytest.approx(reference_metrics(x, labels), abs=1e-12)


def test_no_query_with_a_positive_is_an_error():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="no query has a positive"):
        retrieval_metrics(x, [0, 1, 2, 3])


def test_recall_at_k_alone_agrees(clustered):
    x, labels = clustered(seed=3)
    ks = (1, 3, 10, 100)
    full = retrieval_metrics(x, labels, ks=ks)
    for block_size in (10**9, 500):
        assert recall_at_k(x, labels, ks=ks, block_size=block_size) == {f"recall@{k}": full[f"recall@{k}"] for k in ks}


def test_worker_threads_give_the_same_result(clustered):
    x, labels = clustered(seed=4)
    expected = retrieval_metrics(x, labels, block_size=64 * 240)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert retrieval_metrics(x, labels, block_size=64 * 240) == expected
    finally:
        torch.set_num_threads(threads)


def test_features_are_normalised(clustered, reference_metrics):
    x, labels = clustered(seed=5)
    # Powers of two keep exact duplicates exact after normalisation (the other scores move by ulps).
    scaled = x * 2.0 ** np.random.default_rng(0).integers(-3, 4, size=(len(x), 1))
    assert retrieval_metrics(scaled, labels) == pytest.approx(reference_metrics(x, labels), abs=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda x: retrieval_metrics(x, [0, 1]), "vector of 6 labels"),
    (lambda x: retrieval_metrics(x[:, :, None], [0] * 6), "shape"),
    (lambda x: retrieval_metrics(np.where(np.eye(6, 3) > 0, np.nan, x), [0] * 6), "row 0 holds NaN"),
    (lambda x: retrieval_metrics(x, [0] * 6, gallery=x), "together"),
    (lambda x: retrieval_metrics(x, [0] * 6, x[:, :2], [0] * 6), "dimension"),
    (lambda x: retrieval_metrics(x, [0.5] * 6), "integers"),
    (lambda x: retrieval_metrics(x, [0] * 6, ks=(0,)), "at least 1"),
    (lambda x: retrieval_metrics(x, [0] * 6, block_size=0), "block_size"),
    (lambda x: retrieval_metrics(x, [0] * 6, backend="annoy"), "backend"),
])
def test_bad_input_is_named(call, message):
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=message):
        call(x)
