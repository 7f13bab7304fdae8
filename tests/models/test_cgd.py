import numpy as np
import pytest
import torch

from retrieval.models import HEADS
from retrieval.models.cgd import PAPER_CONFIGURATIONS

IN_CHANNELS, CLASSES = 8, 5


def reference_pool(letter: str, x: torch.Tensor) -> np.ndarray:
    """SPoC / MAC / GeM(p=3) written directly in numpy, per image and channel."""
    v = x.detach().numpy().reshape(x.shape[0], x.shape[1], -1)
    return {"S": v.mean(-1), "M": v.max(-1), "G": np.cbrt((v**3).mean(-1))}[letter]


def l2(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def head(descriptors: str, **args):
    torch.manual_seed(0)
    module = HEADS.get("cgd")(IN_CHANNELS, CLASSES, descriptors=descriptors, **args).double().eval()
    bn = module.classifier[0]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return module


@pytest.fixture
def feature_map():
    return torch.rand(4, IN_CHANNELS, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.05


def test_the_paper_lists_twelve_distinct_configurations():
    assert len(set(PAPER_CONFIGURATIONS)) == 12


@pytest.mark.parametrize("descriptors", PAPER_CONFIGURATIONS)
def test_shapes_normalisation_and_branch_order(descriptors, feature_map):
    cgd = head(descriptors)
    out = cgd(feature_map)
    k = len(descriptors)
    assert out["embedding"].shape == (4, 1536)
    assert out["logits"].shape == (4, CLASSES)
    assert [b.shape for b in out["branches"]] == [(4, 1536 // k)] * k
    branches = []
    for letter, fc, branch in zip(descriptors, cgd.fcs, out["branches"]):
        expected = l2(reference_pool(letter, feature_map) @ fc.weight.detach().numpy().T)
        np.testing.assert_allclose(branch.detach().numpy(), expected, rtol=1e-10, atol=1e-12)
        branches.append(expected)
    np.testing.assert_allclose(out["embedding"].detach().numpy(), l2(np.concatenate(branches, axis=1)),
                               rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(out["embedding"].norm(dim=1).detach().numpy(), 1.0, rtol=1e-12)


@pytest.mark.parametrize("descriptors", PAPER_CONFIGURATIONS)
def test_aux_classifier_reads_the_first_descriptor_before_its_fc(descriptors, feature_map):
    cgd = head(descriptors, dim=12)
    bn, fc = cgd.classifier
    pooled = reference_pool(descriptors[0], feature_map)
    normalised = (pooled - bn.running_mean.numpy()) / np.sqrt(bn.running_var.numpy() + bn.eps)
    normalised = normalised * bn.weight.detach().numpy() + bn.bias.detach().numpy()
    expected = normalised @ fc.weight.detach().numpy().T + fc.bias.detach().numpy()
    np.testing.assert_allclose(cgd(feature_map)["logits"].detach().numpy(), expected, rtol=1e-10)
    with torch.no_grad():  # the branch FCs do not feed the classifier
        for branch_fc in cgd.fcs:
            branch_fc.weight.mul_(3.0)
    np.testing.assert_allclose(cgd(feature_map)["logits"].detach().numpy(), expected, rtol=1e-10)


def test_classifier_gradient_reaches_only_the_max_positions_when_mac_is_first(feature_map):
    x = feature_map.clone().requires_grad_()
    head("MG", dim=12)(x)["logits"].sum().backward()
    flat = x.detach().flatten(2)
    at_max = torch.zeros_like(flat).scatter_(2, flat.argmax(dim=2, keepdim=True), 1.0).bool()
    grad = x.grad.flatten(2)
    assert (grad[~at_max] == 0).all() and (grad[at_max] != 0).any()


def test_combining_without_branch_normalisation(feature_map):
    cgd = head("SMG", dim=12, normalize_branches=False)
    out = cgd(feature_map)
    raw = [reference_pool(letter, feature_map) @ fc.weight.detach().numpy().T for letter, fc in zip("SMG", cgd.fcs)]
    np.testing.assert_allclose(out["embedding"].detach().numpy(), l2(np.concatenate(raw, axis=1)), rtol=1e-10)
    np.testing.assert_allclose(out["branches"][1].detach().numpy(), l2(raw[1]), rtol=1e-10)
    normalised = head("SMG", dim=12)(feature_map)["embedding"]
    assert not torch.allclose(out["embedding"], normalised)


@pytest.mark.parametrize("args, message", [
    ({"descriptors": "SX"}, "distinct letters"),
    ({"descriptors": "SS"}, "distinct letters"),
    ({"descriptors": ""}, "distinct letters"),
    ({"descriptors": "SMG", "dim": 1000}, "multiple of 3"),
])
def test_bad_configurations_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        HEADS.get("cgd")(IN_CHANNELS, CLASSES, **args)


def test_the_classifier_needs_classes():
    with pytest.raises(ValueError, match="num_classes"):
        HEADS.get("cgd")(IN_CHANNELS, 0)
