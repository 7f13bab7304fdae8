"""ProxyNCA against its definition looped over the batch; the engine's injected arguments."""
import inspect

import pytest
import torch
from torch.autograd import gradcheck

from retrieval.losses import LOSSES
from retrieval.losses.proxy import ProxyNCALoss


def looped_proxy_nca(embeddings, labels, proxies):
    x = embeddings / embeddings.norm(dim=1, keepdim=True)
    p = proxies / proxies.norm(dim=1, keepdim=True)
    terms = []
    for i, label in enumerate(labels.tolist()):
        distances = [((x[i] - p[z]) ** 2).sum() for z in range(len(p))]
        others = torch.stack([torch.exp(-d) for z, d in enumerate(distances) if z != label]).sum()
        terms.append(-torch.log(torch.exp(-distances[label]) / others))
    return torch.stack(terms).mean()


def test_equals_definition_for_embeddings_and_proxies():
    torch.manual_seed(0)
    loss = ProxyNCALoss(num_classes=5, embedding_dim=4).double()
    embeddings = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 4, 2, 2, 2, 1])
    ours = loss(embeddings, labels)
    expected = looped_proxy_nca(embeddings, labels, loss.proxies)
    torch.testing.assert_close(ours, expected)
    grads_ours = torch.autograd.grad(ours, (embeddings, loss.proxies))
    grads_expected = torch.autograd.grad(expected, (embeddings, loss.proxies))
    for a, b in zip(grads_ours, grads_expected):
        torch.testing.assert_close(a, b)


def test_gradcheck_in_embeddings_and_proxies():
    torch.manual_seed(1)
    loss = ProxyNCALoss(num_classes=3, embedding_dim=3).double()
    proxies = loss.proxies.detach().clone().requires_grad_()
    embeddings = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 2, 2, 1, 0])

    def with_proxies(e, p):
        return torch.func.functional_call(loss, {"proxies": p}, (e, labels))

    assert gradcheck(with_proxies, (embeddings, proxies))


def test_engine_injects_num_classes_and_embedding_dim():
    parameters = inspect.signature(LOSSES.get("proxy_nca")).parameters
    assert {"num_classes", "embedding_dim"} <= set(parameters)
    loss = LOSSES.build("proxy_nca", num_classes=6, embedding_dim=8)
    assert loss.proxies.shape == (6, 8) and loss.proxies.requires_grad


def test_bad_input_is_explained():
    loss = ProxyNCALoss(num_classes=3, embedding_dim=2)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        loss(torch.randn(2, 2), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="5 dimensions but the proxies 2"):
        ProxyNCALoss(num_classes=3, embedding_dim=2)(torch.randn(2, 5), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="at least 2 classes"):
        ProxyNCALoss(num_classes=1, embedding_dim=2)


def test_float64_embeddings_meet_float32_proxies():
    loss = ProxyNCALoss(num_classes=3, embedding_dim=4)
    value = loss(torch.randn(5, 4, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 0]))
    assert value.dtype == torch.float64 and torch.isfinite(value)
