"""Multistage backprop gives the gradients of plain backprop through the whole batch.

The comparisons run in float64, where the two computations agree to rounding (~1e-15); in
float32 they differ by summation order only (about 1e-6 relative).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from retrieval.engine.multistage import StagesDisagree, multistage_step, partition
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


def embedding_loss(outputs, y):
    return LOSSES.build("smooth_ap")(outputs["embedding"], y), {}


class TwoLayerNet(nn.Module):
    """A per-image MLP with an optional BatchNorm (given) and functional dropout (p) between the layers."""

    def __init__(self, norm: nn.Module | None = None, dropout: float = 0.0):
        super().__init__()
        torch.manual_seed(3)
        self.first, self.second = nn.Linear(3 * 16 * 16, 16), nn.Linear(16, 8)
        self.norm, self.dropout = norm, dropout

    def forward(self, x):
        h = torch.tanh(self.first(x.flatten(1)))
        h = self.norm(h) if self.norm is not None else h
        h = F.dropout(h, self.dropout, training=self.dropout > 0)  # functional: invisible to a module-type check
        h = F.dropout(self.second(h), self.dropout, training=self.dropout > 0)
        return {"embedding": F.normalize(h, dim=1)}


def test_batchnorm_with_chunk_statistics_is_caught_by_comparing_the_passes():
    """BatchNorm without running statistics normalises each chunk by its own statistics even in eval mode:
    the gradient was 137 % off direct backprop (which normalises by the batch's)."""
    model = TwoLayerNet(nn.BatchNorm1d(16, track_running_stats=False)).double().eval()
    images, labels = batch()
    with pytest.raises(StagesDisagree, match="differs between the two forward passes"):
        multistage_step(model, images, labels, embedding_loss, CHUNK)
    model.norm = nn.BatchNorm1d(16).double().train()  # training mode: batch statistics too (and twice updated)
    with pytest.raises(StagesDisagree, match="freeze_bn"):
        multistage_step(model, images, labels, embedding_loss, CHUNK)
    model.norm.eval()  # frozen running statistics: per image, the same function in both passes
    _, expected = gradients(model, lambda: direct(model, images, labels, embedding_loss))
    _, actual = gradients(model, lambda: multistage_step(model, images, labels, embedding_loss, CHUNK)[0])
    assert_same_gradients(expected, actual, rtol=1e-10)


def chunkwise_reference(model, images, labels, criterion, chunk):
    """The naive formulation: forward the chunks one after the other with autograd (one random stream),
    then the loss on all outputs and one backward."""
    outputs = [model(images[i:i + chunk])["embedding"] for i in range(0, len(images), chunk)]
    loss, _ = criterion({"embedding": torch.cat(outputs)}, labels)
    loss.backward()
    return loss


def test_dropout_masks_are_replayed_in_the_recomputed_pass():
    """Functional dropout (two layers) passed the module-type check and gave gradients 167 % off: the
    recomputed pass drew other masks. Each chunk now starts stage 3 from its stage-1 random state."""
    model = TwoLayerNet(dropout=0.5).double()
    images, labels = batch()
    torch.manual_seed(7)
    _, expected = gradients(model, lambda: chunkwise_reference(model, images, labels, embedding_loss, CHUNK))
    after_reference = torch.get_rng_state()
    torch.manual_seed(7)
    _, actual = gradients(model, lambda: multistage_step(model, images, labels, embedding_loss, CHUNK)[0])
    assert_same_gradients(expected, actual, rtol=1e-10)
    assert torch.equal(torch.get_rng_state(), after_reference)  # the stream advanced by one pass, as without it
    model.norm = nn.BatchNorm1d(16, track_running_stats=False).double()  # a random pass cannot be re-partitioned
    with pytest.raises(StagesDisagree, match="norm"):
        multistage_step(model, images, labels, embedding_loss, CHUNK)


def test_partitions_cover_every_position_once():
    for count, size, first in [(24, 5, None), (24, 5, 2), (3, 5, 1), (1, 4, 2), (10, 1, 1)]:
        slices = partition(count, size, first)
        assert [i for s in slices for i in range(count)[s]] == list(range(count))
        assert all(0 < s.stop - s.start <= size for s in slices)


def test_a_loss_that_ignores_the_model_or_a_bad_chunk_size_is_an_error():
    model = frozen_bn_model("embedding", {"dim": 8})
    images, labels = batch()
    with pytest.raises(ValueError, match="does not depend"):
        multistage_step(model, images, labels, lambda o, y: (torch.ones((), requires_grad=True), {}), CHUNK)
    with pytest.raises(ValueError, match="does not depend"):
        multistage_step(model, images, labels, lambda o, y: (torch.ones(()), {}), CHUNK)
    with pytest.raises(ValueError, match="chunk_size"):
        multistage_step(model, images, labels, lambda o, y: (o["embedding"].sum(), {}), 0)
