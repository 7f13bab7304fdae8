"""mAP_Q and AP_T against the full (queries, bins, items) histogram, exact AP and brute-force tie orders."""
import itertools
import math

import pytest
import torch
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses import functional as F
from retrieval.losses.quantized_ap import QuantizedAPLoss

# items of unequal class sizes (5, 3, 1, 2, 4) and queries of every class plus one of an absent class
ITEM_LABELS = torch.tensor([0, 1, 0, 2, 3, 0, 1, 4, 4, 0, 3, 4, 1, 0, 4])
QUERY_LABELS = torch.tensor([0, 1, 2, 3, 4, 9, 0])


def naive_histograms(scores, relevance, num_bins, low, high):
    """Every score against every bin centre: the (N, bins, M) triangle weights, end bins saturated."""
    delta = (high - low) / (num_bins - 1)
    centres = high - delta * torch.arange(num_bins, dtype=scores.dtype)
    s = scores.unsqueeze(1)
    weights = (1 - (s - centres.view(1, -1, 1)).abs() / delta).clamp_min(0)
    first = torch.where(s >= high, torch.ones_like(s), weights[:, :1])
    last = torch.where(s <= low, torch.ones_like(s), weights[:, -1:])
    weights = torch.cat([first, weights[:, 1:-1], last], dim=1)
    return weights.sum(dim=2), (weights * relevance.unsqueeze(1)).sum(dim=2)


def naive_quantized_ap(scores, relevance, num_bins, low, high):
    counts, positives = naive_histograms(scores, relevance, num_bins, low, high)
    ap = []
    for n in range(scores.shape[0]):
        total, hits, value = 0.0, 0.0, 0.0
        for m in range(num_bins):
            total, hits = total + counts[n, m], hits + positives[n, m]
            if total > 0:
                value = value + hits / total * positives[n, m]
        ap.append(value / max(float(relevance[n].sum()), 1.0))
    return torch.stack([torch.as_tensor(a, dtype=scores.dtype) for a in ap])


def naive_harmonic_sum(before, count, harmonic):
    """sum_{t=before+1}^{before+count} 1/t: digamma (exact, soft counts too) or the authors' logarithm."""
    if harmonic == "exact":
        return torch.digamma(before + count + 1) - torch.digamma(torch.as_tensor(before + 1.0))
    return torch.log((before + count + 1) / (before + 1.0))


def naive_tie_aware_ap(scores, relevance, num_bins, low, high, harmonic="exact"):
    """He et al.'s per-bin expectation in its textbook form, rho = max(c+ - 1, 0) / (c - 1)."""
    counts, positives = naive_histograms(scores, relevance, num_bins, low, high)
    ap = []
    for n in range(scores.shape[0]):
        before, hits_before, value = 0.0, 0.0, 0.0
        for m in range(num_bins):
            c, cp = counts[n, m], positives[n, m]
            if c > 0:
                rho = (cp - 1).clamp_min(0) / (c - 1) if c > 1 else 0.0
                h = naive_harmonic_sum(before, c, harmonic)
                value = value + cp / c * (c * rho + (hits_before + 1 - rho * (before + 1)) * h)
            before, hits_before = before + c, hits_before + cp
        ap.append(value / max(float(relevance[n].sum()), 1.0))
    return torch.stack([torch.as_tensor(a, dtype=scores.dtype) for a in ap])


def random_scores(seed, low=-1.3, high=1.3):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(len(QUERY_LABELS), len(ITEM_LABELS), generator=generator, dtype=torch.float64)
    relevance = QUERY_LABELS.unsqueeze(1) == ITEM_LABELS.unsqueeze(0)
    return (low + (high - low) * scores).requires_grad_(), relevance


def values_and_gradients(fn, scores, relevance):
    upstream = torch.linspace(0.5, 1.5, scores.shape[0], dtype=scores.dtype)
    value = fn(scores, relevance)
    (gradient,) = torch.autograd.grad((value * upstream).sum(), scores)
    return value.detach(), gradient


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("num_bins", [2, 5, 20])
def test_quantized_ap_equals_full_histogram_form(seed, num_bins):
    scores, relevance = random_scores(seed)
    ours = values_and_gradients(lambda s, r: F.quantized_ap(s, r, num_bins, -1.0, 1.0), scores, relevance)
    naive = values_and_gradients(lambda s, r: naive_quantized_ap(s, r, num_bins, -1.0, 1.0), scores, relevance)
    for a, b in zip(ours, naive):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert ours[0][QUERY_LABELS == 9].item() == 0.0


@pytest.mark.parametrize("harmonic", ["log", "exact"])
@pytest.mark.parametrize("seed", [0, 1])
def test_tie_aware_ap_equals_textbook_form(seed, harmonic):
    scores, relevance = random_scores(seed, -1.0, 1.0)
    ours = values_and_gradients(lambda s, r: F.tie_aware_quantized_ap(s, r, 6, -1.0, 1.0, harmonic=harmonic),
                                scores, relevance)
    naive = values_and_gradients(lambda s, r: naive_tie_aware_ap(s, r, 6, -1.0, 1.0, harmonic), scores, relevance)
    for a, b in zip(ours, naive):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_soft_histograms_spread_one_unit_per_score():
    scores, relevance = random_scores(3)
    counts, positives = F.soft_histograms(scores, relevance, 7, -1.0, 1.0)
    torch.testing.assert_close(counts.sum(dim=1), torch.full((scores.shape[0],), float(scores.shape[1]),
                                                             dtype=torch.float64))
    torch.testing.assert_close(positives.sum(dim=1), relevance.sum(dim=1).double())


def exact_ap_of_ranking(relevant_in_order):
    hits, total = 0, 0.0
    for position, relevant in enumerate(relevant_in_order, start=1):
        if relevant:
            hits += 1
            total += hits / position
    return total / hits


def test_quantized_ap_error_shrinks_with_more_bins():
    generator = torch.Generator().manual_seed(7)
    scores = torch.rand(40, 60, generator=generator, dtype=torch.float64) * 2 - 1
    relevance = torch.rand(40, 60, generator=generator) < 0.2
    exact = F.average_precision(scores, relevance)
    errors = [(F.quantized_ap(scores, relevance, bins, -1.0, 1.0) - exact).abs().mean().item()
              for bins in (3, 10, 40, 160, 640)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    # what remains is the bias of splitting one item over two bins, whatever their width
    assert errors[-1] < errors[0] / 5


def test_quantized_ap_is_exact_when_every_score_has_its_own_bin_centre():
    generator = torch.Generator().manual_seed(2)
    scores = torch.stack([torch.randperm(17, generator=generator)[:12] for _ in range(8)]).double() / 8 - 1
    relevance = torch.rand(8, 12, generator=generator) < 0.3
    relevance[:, 5] = True
    torch.testing.assert_close(F.quantized_ap(scores, relevance, 17, -1.0, 1.0), F.average_precision(scores, relevance))


def test_tie_aware_ap_is_the_expectation_over_tie_orders():
    """Scores on bin centres give whole counts: AP_T must be the mean AP over every order of the tied items."""
    centres = torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    scores = centres[torch.randint(0, 5, (5, 6), generator=generator)]
    scores[0] = centres[torch.tensor([0, 0, 0, 2, 2, 4])]  # a bin with several positives and negatives
    relevance = torch.rand(5, 6, generator=generator) < 0.5
    relevance[0] = torch.tensor([True, False, True, True, False, False])
    relevance[:, 0] = True
    for n in range(scores.shape[0]):
        orders = list(itertools.permutations(range(6)))
        expected = 0.0
        for tie_break in orders:
            ranking = sorted(range(6), key=lambda j: (-scores[n, j].item(), tie_break[j]))
            expected += exact_ap_of_ranking([bool(relevance[n, j]) for j in ranking])
        expected /= len(orders)
        ours = F.tie_aware_quantized_ap(scores[n:n + 1], relevance[n:n + 1], 5, 0.0, 1.0, harmonic="exact")
        assert ours.item() == pytest.approx(expected, abs=1e-9)


def test_log_form_is_the_authors_formula_on_whole_counts():
    """Whole counts (scores on bin centres), one query: each bin adds
    (c+/c) * (c rho + (C+ + 1 - rho (C + 1)) log((C + c + 1)/(C + 1))), summed in plain Python floats."""
    centres = [1.0, 0.75, 0.5, 0.25, 0.0]
    bins = [0, 0, 0, 1, 2, 2, 2, 2, 4]
    relevant = [True, False, True, True, False, True, True, False, True]
    expected, before, hits_before = 0.0, 0, 0
    for m in range(5):
        c = sum(1 for b in bins if b == m)
        cp = sum(1 for b, r in zip(bins, relevant) if b == m and r)
        if c:
            rho = (cp - 1) / (c - 1) if cp > 1 else 0.0
            expected += cp / c * (c * rho + (hits_before + 1 - rho * (before + 1)) * math.log((before + c + 1)
                                                                                              / (before + 1)))
        before, hits_before = before + c, hits_before + cp
    expected /= sum(relevant)
    scores = torch.tensor([[centres[b] for b in bins]], dtype=torch.float64)
    ours = F.tie_aware_quantized_ap(scores, torch.tensor([relevant]), 5, 0.0, 1.0, harmonic="log")
    assert ours.item() == pytest.approx(expected, abs=1e-12)
    # and it is not the exact expectation: one lone positive first gets log 2, not 1
    lone = F.tie_aware_quantized_ap(torch.ones(1, 1), torch.ones(1, 1), 4, -1.0, 1.0, harmonic="log")
    assert lone.item() == pytest.approx(math.log(2))


def test_log_and_exact_forms_agree_as_bins_fill():
    """log((C+c+1)/(C+1)) - (H(C+c) - H(C)) -> 0 as the counts grow: the two forms meet on large batches."""
    generator = torch.Generator().manual_seed(4)
    gaps = []
    for num_items in (20, 2000):
        scores = torch.rand(4, num_items, generator=generator, dtype=torch.float64) * 2 - 1
        relevance = torch.rand(4, num_items, generator=generator) < 0.3
        forms = [F.tie_aware_quantized_ap(scores, relevance, 5, -1.0, 1.0, harmonic=h) for h in ("log", "exact")]
        gaps.append((forms[0] - forms[1]).abs().max().item())
    assert gaps[1] < gaps[0] / 10 and gaps[1] < 1e-3, gaps


@pytest.mark.parametrize("simplified", [False, True])
def test_tie_aware_ap_is_exact_without_ties(simplified):
    """Exact harmonic sums (or the simplified form, which needs none) give plain AP when no two items tie."""
    generator = torch.Generator().manual_seed(1)
    scores = torch.stack([torch.randperm(9, generator=generator)[:7] for _ in range(6)]).double() / 8
    relevance = torch.rand(6, 7, generator=generator) < 0.4
    relevance[:, 3] = True
    ours = F.tie_aware_quantized_ap(scores, relevance, 9, 0.0, 1.0, simplified=simplified, harmonic="exact")
    torch.testing.assert_close(ours, F.average_precision(scores, relevance))


def embeddings_and_labels(seed=0, dtype=torch.float64):
    labels = torch.tensor([3, 3, 3, 3, 7, 7, 1, 1, 1, 5, 7, 3])
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.nn.functional.normalize(torch.randn(len(labels), 6, generator=generator, dtype=dtype), dim=1)
    return embeddings.requires_grad_(), labels


@pytest.mark.parametrize("class_weighted", [False, True])
def test_loss_equals_one_minus_mean_naive_ap_over_queries_with_positives(class_weighted):
    embeddings, labels = embeddings_and_labels()
    loss = QuantizedAPLoss(num_bins=20, class_weighted=class_weighted)(embeddings, labels)
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    scores = (embeddings @ embeddings.T)[off_diagonal].view(len(labels), -1)
    relevance = (labels.unsqueeze(0) == labels.unsqueeze(1))[off_diagonal].view(len(labels), -1)
    ap = naive_quantized_ap(scores, relevance, 20, -1.0, 1.0)
    per_class = {}
    for query, label in enumerate(labels.tolist()):
        if relevance[query].any():
            per_class.setdefault(label, []).append(ap[query])
    if class_weighted:
        expected = 1 - sum(sum(v) / len(v) for v in per_class.values()) / len(per_class)
    else:
        expected = 1 - sum(sum(v) for v in per_class.values()) / sum(len(v) for v in per_class.values())
    assert 5 not in per_class  # the single-item class has no AP
    torch.testing.assert_close(loss, expected, atol=1e-12, rtol=0)
    (ours,) = torch.autograd.grad(loss, embeddings)
    (naive,) = torch.autograd.grad(expected, embeddings)
    torch.testing.assert_close(ours, naive, atol=1e-6, rtol=0)


@pytest.mark.parametrize("options", [{}, {"tie_aware": True}, {"tie_aware": True, "harmonic": "exact"},
                                     {"tie_aware": True, "simplified": True},
                                     {"class_weighted": True}, {"tie_aware": True, "class_weighted": True}])
def test_gradcheck(options):
    embeddings, labels = embeddings_and_labels(1)
    loss = QuantizedAPLoss(num_bins=5, **options)
    assert gradcheck(lambda e: loss(e, labels), (embeddings,))


def test_registered_and_bad_arguments_are_explained():
    assert LOSSES.get("quantized_ap") is QuantizedAPLoss
    with pytest.raises(ValueError, match="num_bins"):
        QuantizedAPLoss(num_bins=1)
    with pytest.raises(ValueError, match="min_score < max_score"):
        QuantizedAPLoss(score_range=(1.0, -1.0))
    with pytest.raises(ValueError, match="tie_aware=True"):
        QuantizedAPLoss(simplified=True)
    with pytest.raises(ValueError, match="harmonic must be one of"):
        QuantizedAPLoss(tie_aware=True, harmonic="digamma")
    with pytest.raises(ValueError, match="labels must be"):
        QuantizedAPLoss()(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


@pytest.mark.parametrize("num_items", [1, 3])
@pytest.mark.parametrize("simplified", [False, True])
def test_tie_aware_ap_of_tied_positives_is_one(num_items, simplified):
    ap = F.tie_aware_quantized_ap(torch.ones(1, num_items), torch.ones(1, num_items), 4, -1.0, 1.0,
                                  simplified=simplified, harmonic="exact")
    assert ap.item() == pytest.approx(1.0)
