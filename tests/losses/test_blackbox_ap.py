"""BlackBox AP: exact AP forward; backward the interpolation gradient, recomputed here with counted ranks."""
import pytest
import torch

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.blackbox_ap import BlackBoxAPLoss


def counted_ranks(scores):
    """rank = 1 + number of strictly higher scores in the row (scores here are distinct)."""
    return 1 + (scores.unsqueeze(1) > scores.unsqueeze(2)).sum(dim=2).to(scores.dtype)


def expected_gradient(scores, relevance, upstream, interpolation, margin):
    """d(sum upstream * AP)/d scores by the definition: AP = mean_i rank+_i / rank_i, each rank function
    differentiated as (rank(s + lambda dL/drank) - rank(s)) / lambda."""
    rel = relevance.to(scores.dtype)
    shifted = scores + margin * (0.5 - rel)
    rank_all = counted_ranks(shifted)
    low = shifted.min() - 1000.0  # stand-in for -inf: below every positive
    positives_only = torch.where(relevance, shifted, low)
    rank_positive = counted_ranks(positives_only)
    weight = (upstream / rel.sum(dim=1).clamp_min(1)).unsqueeze(1) * rel
    d_rank_positive = weight / rank_all
    d_rank_all = -weight * rank_positive / rank_all.square()
    grad_all = (counted_ranks(shifted + interpolation * d_rank_all) - rank_all) / interpolation
    grad_positive = (counted_ranks(positives_only + interpolation * d_rank_positive) - rank_positive) / interpolation
    return grad_all + torch.where(relevance, grad_positive, torch.zeros_like(grad_positive))


@pytest.mark.parametrize("interpolation", [0.5, 4.0, 50.0])
@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_backward_is_the_interpolation_gradient(interpolation, margin):
    generator = torch.Generator().manual_seed(0)
    scores = (torch.rand(6, 11, generator=generator, dtype=torch.float64) * 2 - 1).requires_grad_()
    relevance = torch.rand(6, 11, generator=generator) < 0.4
    relevance[2] = False
    upstream = torch.rand(6, generator=generator, dtype=torch.float64) + 0.5
    ap = F.blackbox_ap(scores, relevance, interpolation, margin)
    (gradient,) = torch.autograd.grad((ap * upstream).sum(), scores)
    torch.testing.assert_close(gradient, expected_gradient(scores.detach(), relevance, upstream, interpolation, margin))


def test_value_is_exact_ap_and_margin_ranks_shifted_scores():
    generator = torch.Generator().manual_seed(1)
    scores = torch.rand(8, 15, generator=generator, dtype=torch.float64)
    relevance = torch.rand(8, 15, generator=generator) < 0.3
    torch.testing.assert_close(F.blackbox_ap(scores, relevance, 4.0), F.average_precision(scores, relevance))
    shifted = scores + 0.2 * (0.5 - relevance.double())
    torch.testing.assert_close(F.blackbox_ap(scores, relevance, 4.0, margin=0.2),
                               F.average_precision(shifted, relevance))


def test_loss_is_one_minus_map_of_the_batch_without_self():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    generator = torch.Generator().manual_seed(2)
    embeddings = torch.nn.functional.normalize(torch.randn(10, 4, generator=generator), dim=1).requires_grad_()
    loss = BlackBoxAPLoss()(embeddings, labels)
    keep = ~torch.eye(10, dtype=torch.bool)
    scores = (embeddings @ embeddings.T).detach()[keep].view(10, 9)
    relevance = (labels.unsqueeze(0) == labels.unsqueeze(1))[keep].view(10, 9)
    ap = F.average_precision(scores, relevance)
    assert loss.item() == pytest.approx(1 - ap[labels != 2].mean().item(), abs=1e-6)
    loss.backward()
    assert torch.isfinite(embeddings.grad).all() and embeddings.grad.abs().sum() > 0


def test_a_descent_step_improves_a_bad_ranking():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.1]], dtype=torch.float64, requires_grad=True)
    relevance = torch.tensor([[False, False, True, True]])
    loss = 1 - F.blackbox_ap(scores, relevance, 4.0).mean()
    loss.backward()
    stepped = scores.detach() - scores.grad
    assert F.average_precision(stepped, relevance).item() > F.average_precision(scores.detach(), relevance).item()


def test_registered_and_checks_arguments():
    assert LOSSES.get("blackbox_ap") is BlackBoxAPLoss
    with pytest.raises(ValueError, match="interpolation"):
        BlackBoxAPLoss(interpolation=0.0)
