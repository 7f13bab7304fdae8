"""The building blocks are importable from their packages, listed in ``__all__`` and documented."""
import importlib
import inspect

import pytest
import torch

PACKAGES = ["retrieval.losses", "retrieval.models", "retrieval.evaluation", "retrieval.data"]


def test_the_issue_names_import():
    from retrieval.data import ClassBalancedBatchSampler, RandomBatchSampler  # noqa: F401
    from retrieval.evaluation import PROTOCOLS, evaluate_revisited, leave_one_out, retrieval_metrics  # noqa: F401
    from retrieval.losses import LOSSES, QuantizedAPLoss, SmoothAPLoss
    from retrieval.models import CGDHead, EmbeddingHead, GeM, SPoC  # noqa: F401

    assert LOSSES.get("smooth_ap") is SmoothAPLoss and LOSSES.get("quantized_ap") is QuantizedAPLoss


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_exists_and_is_documented(package):
    module = importlib.import_module(package)
    assert module.__all__ == sorted(set(module.__all__), key=module.__all__.index)  # no duplicates
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isclass(value) or inspect.isfunction(value) or inspect.ismodule(value):
            assert (value.__doc__ or "").strip(), f"{package}.{name} has no docstring"


def test_unknown_name_is_an_attribute_error():
    import retrieval.data

    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        retrieval.data.Nope  # noqa: B018


def test_blocks_in_a_plain_training_loop():
    """As docs/api.md shows: a torch model of one's own, a loss and a metric of this package."""
    from retrieval.evaluation import retrieval_metrics
    from retrieval.losses import SmoothAPLoss
    from retrieval.models import GeM

    torch.manual_seed(0)
    labels = torch.arange(32) // 4
    images = torch.randn(32, 3, 8, 8) + labels[:, None, None, None].float()
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), GeM(), torch.nn.Linear(16, 8))
    loss_fn = SmoothAPLoss(temperature=0.05)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        loss = loss_fn(torch.nn.functional.normalize(net(images), dim=1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    with torch.no_grad():
        assert 0 <= retrieval_metrics(net(images), labels, ks=(1,))["recall@1"] <= 1


def test_the_api_page_example_runs(capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    example = re.findall(r"```python\n(.*?)```", page, re.S)[0]
    exec(compile(example, "docs/api.md", "exec"), {})
    assert "recall@1" in capsys.readouterr().out
