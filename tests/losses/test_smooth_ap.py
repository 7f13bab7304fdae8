"""Smooth-AP against the (N, M, M) broadcast form, exact AP as the temperature vanishes, and gradcheck."""
import pytest
import torch
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.smooth_ap import SmoothAPLoss

LABELS = torch.tensor([2, 2, 2, 2, 2, 0, 0, 9, 4, 4, 4, 0, 2])  # class sizes 6, 3, 1, 3


def naive_smooth_ap(scores, relevance, temperature):
    """Every (query, i, j) sigmoid at once, as the authors' code does it."""
    relevance = relevance.to(scores.dtype)
    differences = scores.unsqueeze(1) - scores.unsqueeze(2)  # [n, i, j] = s_nj - s_ni
    not_self = 1 - torch.eye(scores.shape[1], dtype=scores.dtype)
    sigmoids = torch.sigmoid(differences / temperature) * not_self
    rank_all = 1 + sigmoids.sum(dim=2)
    rank_positive = 1 + (sigmoids * relevance.unsqueeze(1)).sum(dim=2)
    return (relevance * rank_positive / rank_all).sum(dim=1) / relevance.sum(dim=1).clamp_min(1)


def batch(seed=0, dtype=torch.float64, dim=5):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(len(LABELS), dim, generator=generator, dtype=dtype)
    return torch.nn.functional.normalize(embeddings, dim=1).requires_grad_(), LABELS


def matrices(embeddings, labels, include_self):
    scores, relevance = embeddings @ embeddings.T, labels.unsqueeze(0) == labels.unsqueeze(1)
    if include_self:
        return scores, relevance
    keep = ~torch.eye(len(labels), dtype=torch.bool)
    return scores[keep].view(len(labels), -1), relevance[keep].view(len(labels), -1)


@pytest.mark.parametrize("chunk_elements", [1, 40, F.DEFAULT_CHUNK_ELEMENTS])
@pytest.mark.parametrize("temperature", [0.01, 0.5])
def test_functional_equals_broadcast_form(chunk_elements, temperature):
    generator = torch.Generator().manual_seed(3)
    scores = (torch.rand(9, 14, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_()
    relevance = torch.rand(9, 14, generator=generator) < 0.3
    relevance[4] = False  # a query without positives
    upstream = torch.rand(9, generator=generator, dtype=torch.float64)
    ours = F.smooth_ap(scores, relevance, temperature, chunk_elements=chunk_elements)
    naive = naive_smooth_ap(scores, relevance, temperature)
    torch.testing.assert_close(ours, naive, atol=1e-6, rtol=0)
    assert ours[4].item() == 0.0
    (grad_ours,) = torch.autograd.grad((ours * upstream).sum(), scores)
    (grad_naive,) = torch.autograd.grad((naive * upstream).sum(), scores)
    torch.testing.assert_close(grad_ours, grad_naive, atol=1e-6, rtol=0)


@pytest.mark.parametrize("include_self", [True, False])
def test_loss_equals_broadcast_form_on_unequal_classes(include_self):
    embeddings, labels = batch()
    loss = SmoothAPLoss(temperature=0.05, include_self=include_self)(embeddings, labels)
    scores, relevance = matrices(embeddings, labels, include_self)
    ap = naive_smooth_ap(scores, relevance, 0.05)
    valid = relevance.any(dim=1)
    assert bool(valid.all()) is include_self  # without itself, the single-item class has no positive
    expected = 1 - ap[valid].mean()
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    (grad_ours,) = torch.autograd.grad(loss, embeddings)
    (grad_naive,) = torch.autograd.grad(expected, embeddings)
    torch.testing.assert_close(grad_ours, grad_naive, atol=1e-6, rtol=0)


def test_tends_to_exact_ap_as_temperature_vanishes():
    generator = torch.Generator().manual_seed(4)
    scores = torch.rand(30, 40, generator=generator, dtype=torch.float64) * 2 - 1
    relevance = torch.rand(30, 40, generator=generator) < 0.25
    exact = F.average_precision(scores, relevance)
    errors = [(F.smooth_ap(scores, relevance, t) - exact).abs().max().item() for t in (1e-1, 1e-2, 1e-4, 1e-8)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4


@pytest.mark.parametrize("include_self", [True, False])
def test_loss_tends_to_one_minus_exact_map_with_matching_retrieval_set(include_self):
    embeddings, labels = batch(5)
    scores, relevance = matrices(embeddings.detach(), labels, include_self)
    exact = F.average_precision(scores, relevance)[relevance.any(dim=1)].mean()
    loss = SmoothAPLoss(temperature=1e-5, include_self=include_self)(embeddings, labels)
    assert loss.item() == pytest.approx(1 - exact.item(), abs=1e-3)


@pytest.mark.parametrize("include_self", [True, False])
def test_gradcheck(include_self):
    embeddings, labels = batch(6, dim=3)
    loss = SmoothAPLoss(temperature=0.1, include_self=include_self, chunk_elements=30)
    assert gradcheck(lambda e: loss(e, labels), (embeddings,))


def test_registered_with_the_authors_convention_by_default():
    loss = LOSSES.build("smooth_ap")
    assert isinstance(loss, SmoothAPLoss) and loss.include_self and loss.temperature == 0.01
    with pytest.raises(ValueError, match="temperature"):
        SmoothAPLoss(temperature=0)
    with pytest.raises(ValueError, match="same shape|one shape"):
        F.smooth_ap(torch.zeros(2, 3), torch.zeros(3, 2), 0.1)
