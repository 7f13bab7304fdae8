import itertools

import numpy as np
import pytest
import torch

from retrieval.io import torch_save
from retrieval.models import WHITENINGS, build_model, fit_whitening
from retrieval.models.whitening import apply_whitening, learned_whitening, pca_whitening


def correlated(n: int, d: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * np.linspace(0.2, 3.0, d)
    return torch.from_numpy(rng.normal(size=(n, d)) @ mixing + rng.normal(size=d))


def covariance(y: np.ndarray) -> np.ndarray:
    centred = y - y.mean(0)
    return centred.T @ centred / len(y)


def test_pca_whitening_at_power_half_gives_identity_covariance_on_the_learning_set():
    x = correlated(300, 6)
    mean, projection = pca_whitening(x, power=0.5)
    y = apply_whitening(x, mean, projection, normalize=False).numpy()
    np.testing.assert_allclose(covariance(y), np.eye(6), atol=1e-9)


def test_pca_power_quarter_leaves_the_square_root_of_the_variances():
    x = correlated(300, 6)
    eigenvalues = np.sort(np.linalg.eigvalsh(covariance(x.numpy())))[::-1]
    mean, projection = pca_whitening(x, power=0.25, dim=4)
    y = apply_whitening(x, mean, projection, normalize=False).numpy()
    np.testing.assert_allclose(covariance(y), np.diag(np.sqrt(eigenvalues[:4])), atol=1e-9)


def test_pca_refuses_more_dimensions_than_the_learning_set_spans():
    with pytest.raises(ValueError, match="dim <= 3"):
        pca_whitening(correlated(4, 6), dim=5)


def test_learned_whitening_whitens_same_label_differences():
    x = correlated(60, 5, seed=1)
    labels = torch.arange(60) % 12
    labels[-3:] = torch.tensor([100, 101, 102])  # singletons make no pair
    pairs = [(i, j) for i, j in itertools.combinations(range(60), 2) if labels[i] == labels[j]]
    xs = x.numpy()
    differences = np.stack([xs[i] - xs[j] for i, j in pairs])
    intra = differences.T @ differences / len(pairs)
    pair_mean = np.concatenate([xs[[i for i, _ in pairs]], xs[[j for _, j in pairs]]]).mean(0)

    mean, projection = learned_whitening(x, labels)
    p = projection.numpy()
    np.testing.assert_allclose(mean.numpy(), pair_mean, atol=1e-12)
    np.testing.assert_allclose(p @ intra @ p.T, np.eye(5), atol=1e-9)
    total = p @ ((xs - pair_mean).T @ (xs - pair_mean)) @ p.T
    np.testing.assert_allclose(total - np.diag(np.diag(total)), 0, atol=1e-8)
    assert np.all(np.diff(np.diag(total)) <= 1e-9), "components ordered by decreasing variance"


def test_learned_whitening_needs_pairs():
    with pytest.raises(ValueError, match="pairs"):
        learned_whitening(correlated(5, 3), torch.arange(5))


def test_fit_whitening_by_name():
    x, labels = correlated(50, 4), torch.arange(50) % 5
    assert WHITENINGS.names() == ["learned", "pca"]
    whitening = fit_whitening("pca", x, labels, power=0.25, dim=3)
    assert whitening.projection.shape == (3, 4) and whitening.mean.shape == (4,)
    assert torch.allclose(whitening(x).norm(dim=1), torch.ones(50, dtype=torch.float32))
    assert fit_whitening("learned", x, labels, dim=2)(x).shape == (50, 2)
    with pytest.raises(KeyError, match="Did you mean 'pca'"):
        fit_whitening("pcaa", x, labels)


def test_whitening_stays_in_float32_under_autocast():
    x = correlated(50, 4).float()
    whitening = fit_whitening("pca", x, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = whitening(x)
    assert mixed.dtype == torch.float32 and torch.equal(mixed, whitening(x))


def test_saved_whitening_reproduces_the_descriptors(tmp_path):
    def make():
        return build_model("small_cnn", {"width": 4}, "embedding", {"dim": 8}, num_classes=0).eval()

    torch.manual_seed(0)
    model, images = make(), torch.rand(40, 3, 8, 8)
    with torch.no_grad():
        plain = model.embed(images)
        model.whitening = fit_whitening("pca", plain, torch.zeros(40), power=0.5, dim=6)
        whitened = model.embed(images)
    assert whitened.shape == (40, 6) and torch.allclose(whitened.norm(dim=1), torch.ones(40))
    torch_save({"model": model.state_dict()}, tmp_path / "final.pt")

    torch.manual_seed(1)
    fresh = make()
    assert fresh.whitening is None
    fresh.load_state_dict(torch.load(tmp_path / "final.pt", weights_only=True)["model"])
    with torch.no_grad():
        assert torch.equal(fresh.embed(images), whitened)
