"""FastAP against pytorch-metric-learning's (batch, batch, bins) implementation of Cakir et al.'s loss."""
import pytest
import torch
from pytorch_metric_learning.losses import FastAPLoss as ReferenceFastAP
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses.fastap import FastAPLoss

LABELS = torch.tensor([1, 1, 1, 1, 1, 6, 6, 0, 3, 3, 3, 6, 1, 8])  # class sizes 6, 3, 1, 3, 1


def batch(seed, dim=6):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(len(LABELS), dim, generator=generator, dtype=torch.float64).requires_grad_()


@pytest.mark.parametrize("num_bins", [4, 10, 25])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_reference_values_and_gradients(num_bins, seed):
    raw = batch(seed)
    # the reference normalises internally; both are compared as functions of the pre-normalisation vectors
    ours = FastAPLoss(num_bins)(torch.nn.functional.normalize(raw, dim=1), LABELS)
    reference = ReferenceFastAP(num_bins=num_bins)(torch.nn.functional.normalize(raw, dim=1), LABELS)
    torch.testing.assert_close(ours, reference, atol=1e-6, rtol=0)
    (grad_ours,) = torch.autograd.grad(ours, raw)
    (grad_reference,) = torch.autograd.grad(reference, raw)
    torch.testing.assert_close(grad_ours, grad_reference, atol=1e-6, rtol=0)


def test_gradcheck():
    embeddings = torch.nn.functional.normalize(batch(2, dim=3).detach(), dim=1).requires_grad_()
    loss = FastAPLoss(num_bins=5)
    assert gradcheck(lambda e: loss(e, LABELS), (embeddings,))


def test_registered_and_checks_arguments():
    assert LOSSES.get("fastap") is FastAPLoss
    with pytest.raises(ValueError, match="num_bins"):
        FastAPLoss(num_bins=0)
