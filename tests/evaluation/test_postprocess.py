"""Multi-scale aggregation, PCA power whitening and alpha-QE against brute-force float64 references."""
import numpy as np
import pytest
import torch

from retrieval.engine.extract import extract_features
from retrieval.evaluation.postprocess import aggregate_scales, alpha_query_expansion, pca_power_projection
from retrieval.models import Whitening
from tests.engine.test_extract import dataset, model, one_by_one, random_images


def unit_rows(rng, n, d, nonnegative=False):
    x = rng.standard_normal((n, d))
    x = np.abs(x) if nonnegative else x
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("power", [1.0, 3.0, 2.7])
def test_aggregate_scales_is_the_generalized_mean_over_scales(power):
    rng = np.random.default_rng(0)
    per_scale = [unit_rows(rng, 5, 7, nonnegative=True) for _ in range(3)]
    expected = np.empty((5, 7))
    for i in range(5):
        for j in range(7):
            expected[i, j] = (sum(d[i, j] ** power for d in per_scale) / 3) ** (1 / power)
        expected[i] /= np.sqrt(sum(v * v for v in expected[i]))
    got = aggregate_scales([torch.tensor(d) for d in per_scale], power)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-6)


def test_aggregate_scales_refuses_negative_descriptors_with_a_power():
    with pytest.raises(ValueError, match="non-negative"):
        aggregate_scales([torch.tensor([[-0.5, 0.5]])], 3.0)


def test_pca_power_projection_matches_the_listwise_ap_authors_transform():
    rng = np.random.default_rng(1)
    components = np.linalg.qr(rng.standard_normal((6, 6)))[0][:4]
    variances, mean, x = np.array([4.0, 2.0, 0.5, 0.1]), rng.standard_normal(6), rng.standard_normal((3, 6))
    # deep-image-retrieval's transform: (x - mean_) @ components_[:v].T / (m * variance^p), then L2.
    expected = (x - mean) @ components[:3].T / (2.0 * variances[:3] ** 0.25)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    projection = pca_power_projection(torch.tensor(components), torch.tensor(variances), 0.25, dim=3,
                                      multiplier=2.0)
    got = Whitening(torch.tensor(mean), projection)(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def brute_force_alpha_qe(queries, database, k, alpha):
    """Each query: itself plus its k most similar database rows weighted by similarity^alpha, L2-normalised."""
    out = np.empty_like(queries)
    for i, q in enumerate(queries):
        sims = [float(q @ d) for d in database]
        nearest = sorted(range(len(database)), key=lambda j: (-sims[j], j))[:k]
        total = q.copy()
        for j in nearest:
            total = total + max(sims[j], 0.0) ** alpha * database[j]
        out[i] = total / np.sqrt((total ** 2).sum())
    return out


@pytest.mark.parametrize("k, alpha", [(1, 3.0), (4, 3.0), (5, 0.0), (30, 1.5)])
def test_alpha_query_expansion_matches_brute_force(k, alpha):
    rng = np.random.default_rng(k)
    queries, database = unit_rows(rng, 6, 8), unit_rows(rng, 30, 8)
    got = alpha_query_expansion(torch.tensor(queries), torch.tensor(database), k, alpha)
    # The weights are exact grid scores (features rounded to 2**-26, see retrieval.evaluation.knn): within 1e-7.
    np.testing.assert_allclose(got.numpy(), brute_force_alpha_qe(queries, database, k, alpha), atol=1e-6)


def test_alpha_query_expansion_with_k_0_is_the_identity_and_bad_settings_are_refused():
    queries = torch.nn.functional.normalize(torch.randn(3, 4), dim=1)
    assert alpha_query_expansion(queries, queries, 0, 3.0) is queries
    with pytest.raises(ValueError, match="k >= 0 and alpha >= 0"):
        alpha_query_expansion(queries, queries, -1, 3.0)
    with pytest.raises(ValueError, match="exceeds the 3 database"):
        alpha_query_expansion(queries, queries, 4, 3.0)


def test_a_whitened_model_is_whitened_once_after_the_scales_are_combined():
    images = random_images([(16, 16)] * 4)
    net = model({"dim": 6})
    rng = np.random.default_rng(2)
    net.whitening = Whitening(torch.tensor(rng.standard_normal(6)), torch.tensor(rng.standard_normal((5, 6))))
    scales = (1.0, 2 ** -0.5, 0.5)
    features = extract_features(net, dataset(images), scales=scales, progress=False)
    whitening, net.whitening = net.whitening, None
    combined = sum(one_by_one(net, images, s).double() for s in scales)
    combined = combined / combined.norm(dim=1, keepdim=True)
    expected = (combined - whitening.mean.double()) @ whitening.projection.double().T
    expected = expected / expected.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(features.numpy(), expected.numpy(), atol=1e-5)


def test_the_revisited_protocol_expands_queries_with_alpha_qe():
    from retrieval.data.split import GALLERY, QUERY, Split
    from retrieval.evaluation.protocols import revisited
    from retrieval.evaluation.revisited import evaluate_revisited

    rng = np.random.default_rng(5)
    features = unit_rows(rng, 12, 6)
    gnd = [{"easy": np.array([0, 3]), "hard": np.array([5]), "junk": np.array([7])},
           {"easy": np.array([2]), "hard": np.array([1, 8]), "junk": np.array([], dtype=np.int64)}]
    split = Split("test", labels=np.full(12, -1), images=[None] * 12,
                  roles=np.array([QUERY] * 2 + [GALLERY] * 10), extra={"gnd": gnd})
    got = revisited(torch.tensor(features), split, qe_k=3, qe_alpha=3.0)
    expanded = brute_force_alpha_qe(features[:2], features[2:], 3, 3.0)
    expected = evaluate_revisited(expanded @ features[2:].T, gnd)
    assert got == {f"{s}/{m}": pytest.approx(v, abs=1e-12) for s, ms in expected.items() for m, v in ms.items()}
    assert got != revisited(torch.tensor(features), split)
