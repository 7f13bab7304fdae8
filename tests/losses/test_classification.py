"""Temperature-scaled, label-smoothed cross-entropy against the formula written out."""
import pytest
import torch
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses.classification import TemperatureLabelSmoothingCE


def written_out(logits, labels, temperature, smoothing):
    num_classes = logits.shape[1]
    target = torch.full_like(logits, smoothing / num_classes)
    target[torch.arange(len(labels)), labels] += 1 - smoothing
    log_probabilities = logits / temperature - torch.logsumexp(logits / temperature, dim=1, keepdim=True)
    return -(target * log_probabilities).sum(dim=1).mean()


@pytest.mark.parametrize(("temperature", "smoothing"), [(0.5, 0.1), (1.0, 0.0), (0.05, 0.3)])
def test_equals_written_out_formula(temperature, smoothing):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(9, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 6, (9,), generator=generator)
    ours = TemperatureLabelSmoothingCE(temperature, smoothing)(logits, labels)
    expected = written_out(logits, labels, temperature, smoothing)
    torch.testing.assert_close(ours, expected)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    (grad_expected,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad_ours, grad_expected)


def test_gradcheck_and_float32_under_autocast():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 4, generator=generator, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 3, 3, 1, 2])
    loss = LOSSES.build("temperature_ce")
    assert (loss.temperature, loss.smoothing) == (0.5, 0.1)
    assert gradcheck(lambda x: loss(x, labels), (logits,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert loss(logits.detach().bfloat16(), labels).dtype == torch.float32


def test_bad_labels_and_arguments_are_explained():
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        TemperatureLabelSmoothingCE()(torch.zeros(2, 4), torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="smoothing"):
        TemperatureLabelSmoothingCE(smoothing=1.0)
    with pytest.raises(ValueError, match="temperature"):
        TemperatureLabelSmoothingCE(temperature=0.0)
