"""Post-hoc whitening of descriptors: learned once from training descriptors, applied at evaluation.

Pure functions learn a ``(mean, projection)`` pair in float64 and :func:`apply_whitening`
maps ``x -> projection @ (x - mean)``, then L2-normalises. :class:`Whitening` holds the pair
as plain tensor buffers, so it travels in a model's state dict and checkpoint.

- ``"pca"``: PCA whitening, ``projection = diag(lambda^-power) V^T`` from the eigen-
  decomposition of the descriptors' covariance (divided by N). ``power=0.5`` is full whitening
  (identity covariance on the learning set); the listwise-AP authors' model zoo uses 0.25.
- ``"learned"``: the supervised whitening of Radenović et al. (TPAMI 2018, used by the
  revisited-benchmark baselines), learned here from every pair of same-label descriptors:
  ``P = L^-1`` with ``L L^T`` the intra-pair scatter (Cholesky), followed by the rotation that
  diagonalises the whitened descriptors' scatter.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from retrieval.registry import Registry

#: ``WHITENINGS.get(name)(features, labels, **args)`` -> a fitted :class:`Whitening`.
WHITENINGS: Registry = Registry("whitening")

#: Eigenvalues below this fraction of the largest are treated as zero variance.
RELATIVE_RANK_TOLERANCE = 1e-10


def apply_whitening(x: torch.Tensor, mean: torch.Tensor, projection: torch.Tensor,
                    normalize: bool = True) -> torch.Tensor:
    """``(x - mean) @ projection.T`` for rows of ``x``, L2-normalised unless ``normalize=False``."""
    x = (x.to(projection.dtype) - mean) @ projection.T
    return F.normalize(x, dim=-1) if normalize else x


def pca_whitening(features: torch.Tensor, power: float = 0.5, dim: int | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and projection (``dim`` x D, top components first) of PCA whitening with ``power``."""
    x = _as_float64(features)
    dim = _output_dim(dim, x.shape[1])
    mean = x.mean(dim=0)
    centred = x - mean
    eigenvalues, eigenvectors = torch.linalg.eigh(centred.T @ centred / len(x))
    eigenvalues, eigenvectors = eigenvalues.flip(0)[:dim], eigenvectors.flip(1)[:, :dim]
    rank = int((eigenvalues > RELATIVE_RANK_TOLERANCE * eigenvalues[0]).sum())
    if rank < dim:
        raise ValueError(f"PCA whitening: the {len(x)} learning descriptors span only {rank} of the {dim} "
                         f"requested dimensions; set dim <= {rank} or learn from more descriptors")
    return mean, eigenvalues.pow(-power)[:, None] * eigenvectors.T


def learned_whitening(features: torch.Tensor, labels: torch.Tensor, dim: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Radenović et al.'s learned whitening from all same-label pairs of ``features``.

    The intra-pair scatter sums ``(x_i - x_j)(x_i - x_j)^T`` over unordered same-label pairs,
    computed per class without listing the pairs (``n * sum x x^T - s s^T``). The mean is that
    of the pairs' end points (each item weighted by its number of pairs), as the original takes
    the mean of the pairs' queries. As in the original, a scatter that is not positive definite
    gets ``alpha * I`` added, alpha growing tenfold from 1e-10 until Cholesky succeeds.
    """
    x = _as_float64(features)
    dim = _output_dim(dim, x.shape[1])
    classes, inverse, counts = torch.unique(torch.as_tensor(labels), return_inverse=True, return_counts=True)
    pairs = int((counts * (counts - 1) // 2).sum())
    if pairs == 0:
        raise ValueError("learned whitening needs same-label pairs, but every label occurs once")
    per_item = (counts - 1)[inverse].to(x.dtype)
    mean = (per_item[:, None] * x).sum(0) / per_item.sum()
    centred = x - mean  # the scatter of differences does not depend on the mean; centring keeps it accurate
    sums = torch.zeros(len(classes), x.shape[1], dtype=x.dtype).index_add_(0, inverse, centred)
    scatter = (per_item[:, None] + 1) * centred
    scatter = scatter.T @ centred - sums.T @ sums
    lower = _cholesky_with_shrinkage(scatter / pairs)
    to_intra_white = torch.linalg.solve_triangular(lower, torch.eye(len(lower), dtype=x.dtype), upper=False)
    white = centred @ to_intra_white.T
    _, eigenvectors = torch.linalg.eigh(white.T @ white)
    return mean, eigenvectors.flip(1)[:, :dim].T @ to_intra_white


def _cholesky_with_shrinkage(matrix: torch.Tensor) -> torch.Tensor:
    alpha = 0.0
    while True:
        lower, info = torch.linalg.cholesky_ex(matrix + alpha * torch.eye(len(matrix), dtype=matrix.dtype))
        if info == 0:
            return lower
        alpha = 1e-10 if alpha == 0 else alpha * 10


def _as_float64(features: torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"whitening is learned from an (N, D) matrix with N >= 2, got shape {tuple(x.shape)}")
    return x


def _output_dim(dim: int | None, input_dim: int) -> int:
    if dim is None:
        return input_dim
    if not 1 <= dim <= input_dim:
        raise ValueError(f"whitening dim must be in [1, {input_dim}] (the descriptor size), got {dim}")
    return dim


class Whitening(nn.Module):
    """Applies a learned whitening (``mean`` (D,), ``projection`` (d, D)), then L2-normalises."""

    def __init__(self, mean: torch.Tensor, projection: torch.Tensor):
        super().__init__()
        if mean.ndim != 1 or projection.ndim != 2 or projection.shape[1] != mean.shape[0]:
            raise ValueError(f"whitening needs mean (D,) and projection (d, D), got {tuple(mean.shape)} "
                             f"and {tuple(projection.shape)}")
        self.register_buffer("mean", mean.float())
        self.register_buffer("projection", projection.float())

    @classmethod
    def empty(cls, in_dim: int, out_dim: int) -> Whitening:
        """A placeholder of the right shape, to load a saved whitening into."""
        return cls(torch.zeros(in_dim), torch.zeros(out_dim, in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Under autocast the projection would run in 16-bit floats and lose the small components.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return apply_whitening(x, self.mean, self.projection)

    def extra_repr(self) -> str:
        return f"in_dim={self.mean.shape[0]}, out_dim={self.projection.shape[0]}"


@WHITENINGS.register("pca")
def fit_pca_whitening(features: torch.Tensor, labels: torch.Tensor | None = None, power: float = 0.5,
                      dim: int | None = None) -> Whitening:
    """PCA whitening learned on ``features`` (labels unused)."""
    return Whitening(*pca_whitening(features, power=power, dim=dim))


@WHITENINGS.register("learned")
def fit_learned_whitening(features: torch.Tensor, labels: torch.Tensor, dim: int | None = None) -> Whitening:
    """Radenović et al.'s learned whitening from the same-label pairs of ``features``."""
    return Whitening(*learned_whitening(features, labels, dim=dim))


def fit_whitening(name: str, features: torch.Tensor, labels: torch.Tensor, **args) -> Whitening:
    """Learn whitening ``name`` from ``features`` (``"pca"``: args ``power``, ``dim``; ``"learned"``: ``dim``)."""
    return WHITENINGS.get(name)(features, labels, **args)
