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
