import numpy as np
import pytest
import torch

from retrieval.models.pooling import MAC, POOLINGS, GeM, SPoC, gem, mac, spoc


def naive(x: np.ndarray, reduce) -> np.ndarray:
    """Per (image, channel) reduction over the flattened spatial positions, by loops."""
    b, c = x.shape[:2]
    return np.array([[reduce(x[i, j].ravel()) for j in range(c)] for i in range(b)])


@pytest.fixture
def feature_map():
    return torch.rand(3, 5, 4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.01


def test_spoc_mac_gem_match_loop_references(feature_map):
    x = feature_map.numpy()
    np.testing.assert_allclose(spoc(feature_map).numpy(), naive(x, lambda v: sum(v) / len(v)), rtol=1e-12)
    np.testing.assert_allclose(mac(feature_map).numpy(), naive(x, max), rtol=0)
    for p in (1.0, 2.5, 3.0):
        expected = naive(x, lambda v, p=p: (sum(t**p for t in v) / len(v)) ** (1 / p))
        np.testing.assert_allclose(gem(feature_map, p).numpy(), expected, rtol=1e-12)


def test_gem_clamps_negative_activations():
    x = torch.full((1, 2, 2, 2), -1.0, dtype=torch.float64)
    assert torch.allclose(gem(x, 3.0, eps=1e-6), torch.full((1, 2), 1e-6, dtype=torch.float64))


def test_gem_tends_to_mac_for_large_p(feature_map):
    assert torch.allclose(gem(feature_map, 200.0), mac(feature_map), rtol=0.02)


def test_modules_wrap_the_functions_and_are_registered(feature_map):
    assert torch.equal(SPoC()(feature_map), spoc(feature_map))
    assert torch.equal(MAC()(feature_map), mac(feature_map))
    assert torch.allclose(GeM(p=2.0).double()(feature_map), gem(feature_map, 2.0))
    assert set(POOLINGS.names()) == {"spoc", "mac", "gem"}
    assert isinstance(POOLINGS.build("gem", p=4.0), GeM)


def test_gem_p_is_trained_only_when_asked(feature_map):
    fixed, learned = GeM(p=3.0), GeM(p=3.0, learn_p=True)
    assert list(fixed.parameters()) == [] and "p" in fixed.state_dict()
    learned.double()(feature_map).sum().backward()
    assert learned.p.grad is not None and learned.p.grad.abs().item() > 0
    with pytest.raises(ValueError, match="positive"):
        GeM(p=0.0)


P_VALUES = (0.5, 1.0, 3.0, 7.5, 7.6, 12.0, 50.0, 200.0)


@pytest.mark.parametrize("p", P_VALUES)
def test_gem_of_a_constant_map_is_the_constant_with_a_finite_gradient(p):
    """A post-ReLU all-zero channel (clamped to eps) and a constant channel: GeM is the constant for every p.
    In float32, eps^p underflowed for p >= 7.6 and d GeM / dp was NaN (-inf at 7.5)."""
    for dtype in (torch.float32, torch.float64):
        module = GeM(p=p, learn_p=True).to(dtype)
        x = torch.zeros(2, 2, 3, 3, dtype=dtype)
        x[:, 1] = 0.7
        x.requires_grad_()
        y = module(torch.relu(x))
        expected = torch.tensor([[1e-6, 0.7]] * 2, dtype=dtype)
        torch.testing.assert_close(y, expected, rtol=1e-6, atol=0)
        y.sum().backward()
        assert torch.isfinite(module.p.grad).all() and torch.isfinite(x.grad).all(), (dtype, p)


def float64_gem_gradients(x: torch.Tensor, p: float, weights: torch.Tensor):
    """The textbook formula in float64 (exact enough here: x >= 0.05, so nothing underflows)."""
    x = x.detach().double().requires_grad_()
    p64 = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    value = x.clamp(min=1e-6).pow(p64).mean(dim=(-2, -1)).pow(1 / p64)
    (value * weights.double()).sum().backward()
    return value.detach(), x.grad, p64.grad


@pytest.mark.parametrize("p", P_VALUES)
def test_gem_gradients_in_float32_and_under_autocast_follow_float64(p):
    generator = torch.Generator().manual_seed(int(p * 10))
    x = torch.rand(2, 3, 4, 5, generator=generator) + 0.05
    weights = torch.randn(2, 3, generator=generator)
    for autocast in (False, True):
        # under autocast the backbone hands GeM bfloat16 maps; the reference starts from the same rounded values
        inputs = (x.to(torch.bfloat16) if autocast else x.clone()).requires_grad_()
        value64, x_grad64, p_grad64 = float64_gem_gradients(inputs, p, weights)
        module = GeM(p=p, learn_p=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            value = module(inputs)
        (value * weights).sum().backward()
        tolerance = 1e-2 if autocast else 1e-4  # the gradient returned to a bfloat16 map is rounded to bfloat16
        torch.testing.assert_close(value.double(), value64, rtol=tolerance, atol=0)
        torch.testing.assert_close(inputs.grad.double(), x_grad64, rtol=tolerance, atol=tolerance * 1e-2)
        assert float(module.p.grad) == pytest.approx(float(p_grad64), rel=tolerance * 5, abs=1e-6), autocast
