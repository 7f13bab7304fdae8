"""Contrastive and triplet losses against loops over pairs and triplets, and pytorch-metric-learning."""
import itertools

import pytest
import torch
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import BatchHardMiner
from pytorch_metric_learning.reducers import MeanReducer
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses.pairwise import BatchHardTripletLoss, ContrastiveLoss, TripletLoss

LABELS = torch.tensor([4, 4, 4, 4, 1, 1, 7, 2, 2, 2, 4, 1])  # class sizes 5, 3, 1, 3


def batch(seed, dim=5, spread=1.0):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(len(LABELS), dim, generator=generator, dtype=torch.float64)
    return torch.nn.functional.normalize(embeddings * spread, dim=1).requires_grad_()


def distance(embeddings, a, b):
    return (embeddings[a] - embeddings[b]).norm()


def looped_contrastive(embeddings, labels, margin):
    terms = []
    for a, b in itertools.permutations(range(len(labels)), 2):
        d = distance(embeddings, a, b)
        terms.append(d**2 / 2 if labels[a] == labels[b] else torch.clamp(margin - d, min=0) ** 2 / 2)
    return torch.stack(terms).mean()


def looped_hard_negative_triplet(embeddings, labels, margin):
    terms = []
    for a in range(len(labels)):
        negatives = [distance(embeddings, a, n) for n in range(len(labels)) if labels[n] != labels[a]]
        for p in range(len(labels)):
            if p != a and labels[p] == labels[a] and negatives:
                terms.append(torch.clamp(distance(embeddings, a, p) - min(negatives) + margin, min=0))
    return torch.stack(terms).mean()


def looped_batch_hard(embeddings, labels, margin):
    terms = []
    for a in range(len(labels)):
        positives = [distance(embeddings, a, p) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        negatives = [distance(embeddings, a, n) for n in range(len(labels)) if labels[n] != labels[a]]
        if positives and negatives:
            terms.append(torch.clamp(max(positives) - min(negatives) + margin, min=0))
    return torch.stack(terms).mean()


CASES = [(ContrastiveLoss, looped_contrastive, 0.7), (TripletLoss, looped_hard_negative_triplet, 0.1),
         (BatchHardTripletLoss, looped_batch_hard, 0.1), (TripletLoss, looped_hard_negative_triplet, 1.0),
         (BatchHardTripletLoss, looped_batch_hard, 1.0)]


@pytest.mark.parametrize(("loss_class", "looped", "margin"), CASES)
def test_equals_loop_over_pairs_and_triplets(loss_class, looped, margin):
    embeddings = batch(0)
    ours = loss_class(margin=margin)(embeddings, LABELS)
    expected = looped(embeddings, LABELS.tolist(), margin)
    assert ours.item() > 0
    torch.testing.assert_close(ours, expected)
    (grad_ours,) = torch.autograd.grad(ours, embeddings)
    (grad_expected,) = torch.autograd.grad(expected, embeddings)
    torch.testing.assert_close(grad_ours, grad_expected)


def test_batch_hard_equals_pytorch_metric_learning():
    embeddings = batch(1)
    reference = TripletMarginLoss(margin=0.3, reducer=MeanReducer())
    expected = reference(embeddings, LABELS, BatchHardMiner()(embeddings, LABELS))
    torch.testing.assert_close(BatchHardTripletLoss(margin=0.3)(embeddings, LABELS), expected)


@pytest.mark.parametrize("loss_class", [ContrastiveLoss, TripletLoss, BatchHardTripletLoss])
def test_gradcheck(loss_class):
    embeddings = batch(2, dim=3)
    loss = loss_class(margin=1.0)
    assert gradcheck(lambda e: loss(e, LABELS), (embeddings,))


def test_registered_with_the_papers_defaults_and_checked():
    assert LOSSES.build("batch_hard_triplet").margin == 0.1
    assert isinstance(LOSSES.build("triplet"), TripletLoss)
    assert isinstance(LOSSES.build("contrastive"), ContrastiveLoss)
    with pytest.raises(ValueError, match="margin"):
        TripletLoss(margin=-1.0)
