"""The helpers of retrieval.losses.functional: exact AP, means over queries, batch matrices, input checks."""
import pytest
import torch

from retrieval.losses import functional as F


def brute_force_ap(scores, relevant):
    """Walk the ranking: score descending, a tie ordered negatives first (a tie never raises AP)."""
    ranking = sorted(range(len(scores)), key=lambda j: (-scores[j], relevant[j], j))
    hits, total = 0, 0.0
    for position, j in enumerate(ranking, start=1):
        if relevant[j]:
            hits += 1
            total += hits / position
    return total / hits if hits else 0.0


def test_average_precision_of_a_known_ranking():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6]])
    relevance = torch.tensor([[1, 0, 1, 0]])
    assert F.average_precision(scores, relevance).item() == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("levels", [1000, 3])
def test_average_precision_equals_brute_force(levels):
    generator = torch.Generator().manual_seed(levels)
    scores = torch.randint(0, levels, (12, 9), generator=generator).double()  # 3 levels: many ties
    relevance = torch.rand(12, 9, generator=generator) < 0.4
    expected = [brute_force_ap(s.tolist(), r.tolist()) for s, r in zip(scores, relevance)]
    torch.testing.assert_close(F.average_precision(scores, relevance), torch.tensor(expected, dtype=torch.float64))


def test_mean_ap_loss_leaves_out_queries_without_positives():
    ap = torch.tensor([0.5, 0.0, 1.0], requires_grad=True)
    relevance = torch.tensor([[1, 0], [0, 0], [0, 1]])
    assert F.has_positive(relevance).tolist() == [True, False, True]
    assert F.mean_ap_loss(ap, relevance).item() == pytest.approx(0.25)
    weights = torch.tensor([3.0, 100.0, 1.0])
    assert F.mean_ap_loss(ap, relevance, weights).item() == pytest.approx(1 - (1.5 + 1.0) / 4)
    nothing = F.mean_ap_loss(ap, torch.zeros(3, 2))
    nothing.backward()
    assert nothing.item() == 0.0 and ap.grad.abs().sum() == 0


def test_batch_ranking_drops_the_query_unless_kept():
    embeddings = torch.eye(3)[[0, 1, 1, 2]]
    labels = torch.tensor([5, 6, 6, 5])
    scores, relevance = F.batch_ranking(embeddings, labels)
    assert scores.shape == (4, 3)
    assert relevance.tolist() == [[False, False, True], [False, True, False], [False, True, False],
                                  [True, False, False]]
    assert scores[1].tolist() == [0.0, 1.0, 0.0]
    full_scores, full_relevance = F.batch_ranking(embeddings, labels, include_self=True)
    assert full_scores.shape == (4, 4) and bool(full_relevance.diagonal().all())


def test_inverse_class_frequency_gives_every_class_one_unit():
    labels = torch.tensor([3, 3, 3, 9, 1, 1])
    weights = F.inverse_class_frequency(labels)
    assert weights.tolist() == pytest.approx([1 / 3] * 3 + [1.0, 0.5, 0.5])


def test_pairwise_distances_have_finite_gradients_where_embeddings_coincide():
    embeddings = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    distances = F.pairwise_distances(embeddings)
    torch.testing.assert_close(distances[0, 2], torch.tensor(2.0, dtype=torch.float64).sqrt())
    assert distances[0, 1].item() < 1e-5
    distances.sum().backward()
    assert torch.isfinite(embeddings.grad).all()


def test_half_precision_scores_are_computed_in_float32():
    scores = torch.rand(3, 5).half()
    relevance = torch.rand(3, 5) < 0.5
    assert F.quantized_ap(scores, relevance, 10, -1.0, 1.0).dtype == torch.float32
    assert F.smooth_ap(scores, relevance, 0.01).dtype == torch.float32


def test_bad_inputs_are_explained():
    with pytest.raises(ValueError, match="one shape"):
        F.average_precision(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="only 0 and 1"):
        F.quantized_ap(torch.zeros(2, 3), torch.full((2, 3), 2), 5, -1.0, 1.0)
    with pytest.raises(TypeError, match="floating point"):
        F.average_precision(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="num_bins"):
        F.quantized_ap(torch.zeros(2, 3), torch.zeros(2, 3), 1, -1.0, 1.0)
    with pytest.raises(ValueError, match=r"embeddings must be \(batch, dim\)"):
        F.batch_ranking(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.batch_ranking(torch.zeros(3, 2), torch.zeros(3))
