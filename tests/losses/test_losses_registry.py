"""Every registered loss: built by name; properties over random batches (hypothesis)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.losses import LOSSES

NUM_CLASSES = 6
DIM = NUM_CLASSES  # one-hot class embeddings need a dimension per class
# (name, arguments) of every loss on embeddings, each option that changes the computation included
EMBEDDING_LOSSES = [
    ("quantized_ap", {}), ("quantized_ap", {"tie_aware": True}),
    ("quantized_ap", {"tie_aware": True, "harmonic": "exact"}),
    ("quantized_ap", {"tie_aware": True, "simplified": True}), ("quantized_ap", {"class_weighted": True}),
    ("smooth_ap", {}), ("smooth_ap", {"include_self": False}),
    ("fastap", {}), ("blackbox_ap", {}), ("contrastive", {}), ("triplet", {}), ("batch_hard_triplet", {}),
    ("proxy_nca", {}),
]
# a perfect ranking (classes mutually orthogonal, a class's items identical) costs nothing for these
ZERO_WHEN_PERFECT = {"quantized_ap", "smooth_ap", "fastap", "blackbox_ap", "contrastive", "triplet",
                     "batch_hard_triplet"}
IDS = [name + "".join(f"-{k}" for k in args) for name, args in EMBEDDING_LOSSES]
# AP_T with the authors' logarithm for its harmonic sums gives a lone positive ranked first log 2, not 1
ZERO_CASES = [(case, i) for case, i in zip(EMBEDDING_LOSSES, IDS)
              if case[0] in ZERO_WHEN_PERFECT and case != ("quantized_ap", {"tie_aware": True})]
PROPERTY_SETTINGS = settings(max_examples=12, deadline=None, derandomize=True)
MAX_BATCH = 10

labels_strategy = st.lists(st.integers(0, NUM_CLASSES - 1), min_size=2, max_size=MAX_BATCH)


def build(name, args):
    torch.manual_seed(0)
    injected = {"num_classes": MAX_BATCH, "embedding_dim": DIM} if name == "proxy_nca" else {}
    return LOSSES.build(name, **args, **injected).double()


def random_embeddings(n, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, DIM, generator=generator, dtype=torch.float64), dim=1)


def value_and_gradient(loss, embeddings, labels):
    embeddings = embeddings.clone().requires_grad_()
    value = loss(embeddings, labels)
    (gradient,) = torch.autograd.grad(value, embeddings, allow_unused=True)
    return value.detach(), torch.zeros_like(embeddings) if gradient is None else gradient


def test_every_loss_of_the_issue_is_registered():
    assert set(LOSSES.names()) == {name for name, _ in EMBEDDING_LOSSES} | {"temperature_ce"}


@pytest.mark.parametrize(("name", "args"), EMBEDDING_LOSSES, ids=IDS)
@PROPERTY_SETTINGS
@given(labels=labels_strategy, seed=st.integers(0, 2**16), permutation_seed=st.integers(0, 2**16))
def test_invariant_to_batch_order(name, args, labels, seed, permutation_seed):
    loss, labels = build(name, args), torch.tensor(labels)
    embeddings = random_embeddings(len(labels), seed)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(permutation_seed))
    value, gradient = value_and_gradient(loss, embeddings, labels)
    permuted_value, permuted_gradient = value_and_gradient(loss, embeddings[order], labels[order])
    torch.testing.assert_close(permuted_value, value)
    torch.testing.assert_close(permuted_gradient, gradient[order])


@pytest.mark.parametrize(("name", "args"), [case for case in EMBEDDING_LOSSES if case[0] != "proxy_nca"],
                         ids=[i for i in IDS if i != "proxy_nca"])
@PROPERTY_SETTINGS
@given(labels=labels_strategy, seed=st.integers(0, 2**16), new_names=st.permutations(range(-3, 97, 10)))
def test_invariant_to_relabelling_classes(name, args, labels, seed, new_names):
    loss, labels = build(name, args), torch.tensor(labels)
    embeddings = random_embeddings(len(labels), seed)
    relabelled = torch.tensor(new_names)[labels]
    torch.testing.assert_close(loss(embeddings, relabelled), loss(embeddings, labels))


@pytest.mark.parametrize(("name", "args"), [case for case, _ in ZERO_CASES], ids=[i for _, i in ZERO_CASES])
@PROPERTY_SETTINGS
@given(labels=labels_strategy)
def test_zero_for_a_perfect_ranking(name, args, labels):
    labels = torch.tensor(labels)
    embeddings = torch.eye(DIM, dtype=torch.float64)[labels]
    # Smooth-AP's sigmoids reach 0 only in the limit: exp(-1/0.01) here
    assert build(name, args)(embeddings, labels).item() == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize(("name", "args"), EMBEDDING_LOSSES, ids=IDS)
@PROPERTY_SETTINGS
@given(labels=labels_strategy, seed=st.integers(0, 2**16),
       kind=st.sampled_from(["all equal", "single-item classes", "some queries without positives"]))
def test_finite_on_degenerate_batches(name, args, labels, seed, kind):
    labels = torch.tensor(labels)
    embeddings = random_embeddings(len(labels), seed)
    if kind == "all equal":
        embeddings = embeddings[:1].expand_as(embeddings).clone()
    elif kind == "single-item classes":
        labels = torch.arange(len(labels))
    else:
        labels = labels % (NUM_CLASSES - 1)
        labels[-1] = NUM_CLASSES - 1  # alone in its class
    value, gradient = value_and_gradient(build(name, args), embeddings, labels)
    assert torch.isfinite(value) and torch.isfinite(gradient).all()


@pytest.mark.parametrize("name", ["quantized_ap", "fastap", "blackbox_ap", "triplet", "batch_hard_triplet"])
def test_nothing_to_rank_gives_zero_loss_and_gradient(name):
    embeddings = random_embeddings(4, 0).requires_grad_()
    loss = build(name, {})(embeddings, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert loss.item() == 0.0 and embeddings.grad.abs().sum() == 0


@pytest.mark.parametrize(("name", "args"), EMBEDDING_LOSSES, ids=IDS)
def test_float32_under_bfloat16_autocast(name, args):
    """Losses compute in float32 under mixed precision: the same value as on the up-cast inputs."""
    embeddings = torch.nn.functional.normalize(torch.randn(12, DIM, generator=torch.Generator().manual_seed(2)), dim=1)
    labels = torch.arange(12) % 4
    loss = build(name, args)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(embeddings.bfloat16(), labels)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(embeddings.bfloat16().float(), labels))
