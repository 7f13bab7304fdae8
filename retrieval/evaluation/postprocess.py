"""Descriptor post-processing of the landmark-retrieval model zoos, as small pure functions.

- :func:`aggregate_scales`: multi-scale descriptors combined by a generalized mean over scales
  (Radenović et al.'s cnnimageretrieval-pytorch, scales such as 1, 1/sqrt(2), 1/2; config key
  ``eval.scales`` with ``eval.scale_power``);
- :func:`pca_power_projection`: PCA whitening with a power on the variances, as the listwise AP
  authors' model zoo applies its scikit-learn PCA (power 0.25 for their published numbers;
  ``python -m retrieval zoo evaluate --whitening-power``);
- :func:`alpha_query_expansion`: α-QE (Radenović et al., TPAMI 2018), as the listwise AP authors'
  test script offers it (config keys ``qe_k`` and ``qe_alpha`` of the ``revisited`` protocol).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from retrieval.evaluation.knn import exact_scores


def aggregate_scales(descriptors: Sequence[torch.Tensor], power: float = 1.0) -> torch.Tensor:
    """``(mean_s d_s^p)^(1/p)`` of S (N, D) descriptors, L2-normalised: (N, D).

    ``p = 1`` averages; ``p`` > 1 (cirtorch's multi-scale evaluation uses the network's GeM
    exponent) needs non-negative descriptors, so negative entries are refused.
    """
    if not len(descriptors):
        raise ValueError("aggregate_scales needs descriptors of at least one scale")
    if not power > 0:
        raise ValueError(f"the generalized mean over scales needs scale_power > 0, got {power}")
    stacked = torch.stack([d.float() for d in descriptors])
    if power != 1.0 and bool((stacked < 0).any()):
        raise ValueError(f"multi-scale aggregation with scale_power={power} needs non-negative descriptors, "
                         "but these have negative entries; use scale_power=1")
    return F.normalize(stacked.pow(power).mean(0).pow(1.0 / power), dim=-1)


def pca_power_projection(components: torch.Tensor, variances: torch.Tensor, power: float = 0.5,
                         whiten: bool = True, dim: int | None = None, multiplier: float = 1.0) -> torch.Tensor:
    """(d, D) projection ``diag(1 / (multiplier * variances^power)) @ components`` of the first ``dim`` components.

    ``components`` (K, D) and ``variances`` (K,) are a fitted PCA's (scikit-learn's ``components_``
    and ``explained_variance_``); ``whiten=False`` projects without rescaling. ``power=0.5`` is full
    whitening. Apply it with :class:`~retrieval.models.whitening.Whitening` (mean, projection).
    """
    components = torch.as_tensor(components, dtype=torch.float64)
    variances = torch.as_tensor(variances, dtype=torch.float64).reshape(-1)
    if components.ndim != 2 or len(variances) != len(components):
        raise ValueError(f"PCA needs components (K, D) and K variances, got {tuple(components.shape)} and "
                         f"{len(variances)}")
    dim = len(components) if dim is None else dim
    if not 1 <= dim <= len(components):
        raise ValueError(f"PCA projection dim must be in [1, {len(components)}], got {dim}")
    if not whiten:
        return components[:dim]
    if bool((variances[:dim] <= 0).any()):
        raise ValueError("PCA whitening needs positive variances for every kept component")
    return components[:dim] / (multiplier * variances[:dim].pow(power))[:, None]


def alpha_query_expansion(queries: torch.Tensor, database: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """α-QE: each query replaced by the L2-normalised sum of itself and its ``k`` most similar
    database descriptors, each weighted by its similarity to the query to the power ``alpha``.

    ``queries`` (Nq, D) and ``database`` (Nd, D) are L2-normalised; returns (Nq, D). ``k = 0``
    returns the queries unchanged; ``alpha = 0`` is average query expansion. Negative similarities
    count as 0 (a fractional power of a negative number is undefined). Ties among the k-th most
    similar are broken by the lower database index.
    """
    if k < 0 or alpha < 0:
        raise ValueError(f"alpha-QE needs k >= 0 and alpha >= 0, got k={k}, alpha={alpha}")
    if k == 0:
        return queries
    if k > len(database):
        raise ValueError(f"alpha-QE k={k} exceeds the {len(database)} database descriptors")
    scores = exact_scores(queries, database)  # neighbours independent of BLAS and threads
    # A stable sort of the negated scores keeps the lower index first among equal scores.
    top = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
    weights = scores.gather(1, top).clamp(min=0).pow(alpha)
    expanded = queries.double() + (weights[..., None] * database.double()[top]).sum(1)
    return F.normalize(expanded, dim=-1).to(queries.dtype)
