"""Multistage backprop gives the gradients of plain backprop through the whole batch.

The comparisons run in float64, where the two computations agree to rounding (~1e-15); in
float32 they differ by summation order only (about 1e-6 relative).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from retrieval.engine.multistage import multistage_step
from retrieval.losses import LOSSES
from retrieval.models import build_model

BATCH, CLASSES, CHUNK = 24, 6, 5  # chunks of 5, 5, 5, 5, 4


def frozen_bn_model(head: str, head_args: dict, dtype=torch.float64) -> nn.Module:
    torch.manual_seed(0)
    model = build_model("small_cnn", {"width": 4}, head, head_args, num_classes=CLASSES).to(dtype)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.eval()
    return model


def batch(dtype=torch.float64):
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 16, 16, dtype=dtype, generator=generator), torch.arange(BATCH) % CLASSES


def gradients(model: nn.Module, step) -> tuple[float, list[torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = step()
    return float(loss.detach()), [p.grad.clone() for p in model.parameters()]


def direct(model, images, labels, criterion) -> torch.Tensor:
    loss, _ = criterion(model(images), labels)
    loss.backward()
    return loss


def assert_same_gradients(expected, actual, rtol):
    assert len(expected) == len(actual)
    for e, a in zip(expected, actual):
        assert e.norm() > 0
        assert (a - e).norm() <= rtol * e.norm(), float((a - e).norm() / e.norm())


@pytest.mark.parametrize("loss_name", ["quantized_ap", "smooth_ap"])
def test_multistage_equals_direct_backprop(loss_name):
    model = frozen_bn_model("embedding", {"pooling": "gem", "pooling_args": {"learn_p": True}, "dim": 8})
    images, labels = batch()
    loss = LOSSES.build(loss_name)

    def criterion(outputs, y):
        return loss(outputs["embedding"], y), {}

    direct_loss, expected = gradients(model, lambda: direct(model, images, labels, criterion))
    multi_loss, actual = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK)[0])
    assert multi_loss == pytest.approx(direct_loss, rel=1e-12)
    assert_same_gradients(expected, actual, rtol=1e-5)


def test_every_output_of_the_head_can_carry_loss():
    """CGD: a ranking loss on the embedding, one per branch (a list), cross-entropy on the logits."""
    model = frozen_bn_model("cgd", {"descriptors": "SMG", "dim": 12})
    images, labels = batch()
    smooth_ap, quantized_ap = LOSSES.build("smooth_ap"), LOSSES.build("quantized_ap")

    def criterion(outputs, y):
        terms = {"rank": smooth_ap(outputs["embedding"], y),
                 "branches": sum(quantized_ap(b, y) for b in outputs["branches"]),
                 "classification": F.cross_entropy(outputs["logits"], y)}
        return sum(terms.values()), {k: float(v.detach()) for k, v in terms.items()}

    _, expected = gradients(model, lambda: direct(model, images, labels, criterion))
    _, actual = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK)[0])
    assert_same_gradients(expected, actual, rtol=1e-5)
    _, terms = multistage_step(model, images, labels, criterion, CHUNK)
    assert set(terms) == {"rank", "branches", "classification"}


def test_loss_scale_of_a_grad_scaler_reaches_the_parameters():
    model = frozen_bn_model("embedding", {"dim": 8})
    images, labels = batch()
    loss = LOSSES.build("smooth_ap")

    def criterion(outputs, y):
        return loss(outputs["embedding"], y), {}

    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    _, plain = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK)[0])
    _, scaled = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK, scaler=scaler)[0])
    assert all(torch.allclose(s, 1024.0 * p, rtol=1e-12) for s, p in zip(scaled, plain))


def test_autocast_follows_direct_backprop_under_autocast():
    model = frozen_bn_model("embedding", {"dim": 8}, dtype=torch.float32)
    images, labels = batch(torch.float32)
    loss = LOSSES.build("smooth_ap")

    def criterion(outputs, y):
        return loss(outputs["embedding"], y), {}

    def direct_autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outputs = model(images)
        value, _ = criterion(outputs, labels)
        value.backward()
        return value

    _, expected = gradients(model, direct_autocast)
    _, actual = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK,
                                                         autocast=torch.bfloat16)[0])
    assert_same_gradients(expected, actual, rtol=2e-2)
    _, full_precision = gradients(model, lambda: multistage_step(model, images, labels, criterion, CHUNK)[0])
    with pytest.raises(AssertionError):  # bfloat16 really was used: float32 gradients are further away
        assert_same_gradients(expected, full_precision, rtol=2e-2)


def test_modules_that_would_make_the_passes_differ_are_refused():
    model = frozen_bn_model("embedding", {"dim": 8})
    images, labels = batch()

    def criterion(outputs, y):
        return outputs["embedding"].sum(), {}

    model.train()  # BatchNorm back to batch statistics
    with pytest.raises(ValueError, match=r"backbone\.features\.0\.1.*freeze_bn"):
        multistage_step(model, images, labels, criterion, CHUNK)
    model.eval()
    model.head.dropout = nn.Dropout(0.5).train()
    with pytest.raises(ValueError, match=r"head\.dropout"):
        multistage_step(model, images, labels, criterion, CHUNK)


def test_a_loss_that_ignores_the_model_or_a_bad_chunk_size_is_an_error():
    model = frozen_bn_model("embedding", {"dim": 8})
    images, labels = batch()
    with pytest.raises(ValueError, match="does not depend"):
        multistage_step(model, images, labels, lambda o, y: (torch.ones((), requires_grad=True), {}), CHUNK)
    with pytest.raises(ValueError, match="does not depend"):
        multistage_step(model, images, labels, lambda o, y: (torch.ones(()), {}), CHUNK)
    with pytest.raises(ValueError, match="chunk_size"):
        multistage_step(model, images, labels, lambda o, y: (o["embedding"].sum(), {}), 0)
