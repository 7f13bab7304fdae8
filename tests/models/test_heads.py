import numpy as np
import pytest
import torch

from retrieval.models import HEADS


@pytest.fixture
def feature_map():
    return torch.rand(3, 6, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.05


def test_embedding_head_gem_learned_p_then_fc_then_l2(feature_map):
    torch.manual_seed(0)
    head = HEADS.get("embedding")(6, 0, pooling="gem", pooling_args={"p": 2.5, "learn_p": True}, dim=10).double()
    out = head(feature_map)
    v = feature_map.numpy().reshape(3, 6, -1)
    pooled = ((v**2.5).mean(-1)) ** (1 / 2.5)
    projected = pooled @ head.fc.weight.detach().numpy().T + head.fc.bias.detach().numpy()
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    np.testing.assert_allclose(out["embedding"].detach().numpy(), expected, rtol=1e-10)
    assert set(out) == {"embedding"}
    names = dict(head.named_parameters())
    assert set(names) == {"pool.p", "fc.weight", "fc.bias"}  # the optimizer groups use these names


def test_embedding_head_without_fc_or_bias(feature_map):
    plain = HEADS.get("embedding")(6, 0, pooling="mac").double()
    expected = feature_map.amax(dim=(2, 3))
    assert torch.allclose(plain(feature_map)["embedding"], expected / expected.norm(dim=1, keepdim=True))
    assert HEADS.get("embedding")(6, 0, dim=4, bias=False).fc.bias is None


def test_unknown_pooling_is_a_clear_error():
    with pytest.raises(KeyError, match="Did you mean 'gem'"):
        HEADS.get("embedding")(6, 0, pooling="gen")


def test_identity_l2_normalises_the_backbone_embedding():
    x = torch.randn(2, 5, 1, 1, dtype=torch.float64)
    out = HEADS.get("identity_l2")(5, 0)(x)["embedding"]
    assert torch.allclose(out, x.flatten(1) / x.flatten(1).norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match=r"\(B, D, 1, 1\)"):
        HEADS.get("identity_l2")(5, 0)(torch.randn(2, 5, 3, 3))
