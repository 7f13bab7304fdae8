"""Search an index of extracted descriptors (:mod:`retrieval.engine.export`) with query images.

``python -m retrieval search RUN_DIR --index FILE.npz --query IMAGE [IMAGE ...] [--top-k K] [--output grid.png]``.
The index is loaded (and, for faiss, its ``IndexFlatIP`` built) once, then queried as often as wanted. The
search is exact either way, with the ranking convention of :mod:`retrieval.evaluation.knn` (decreasing cosine
similarity, ties by index order).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from retrieval.engine.checkpoint import digest_problem
from retrieval.evaluation.knn import DEFAULT_BLOCK_SIZE, Neighbours, check_backend, exact_features, knn


class FeatureIndex:
    """Descriptors ``features`` (N, D) of the images ``paths`` (N,), searchable by cosine similarity.

    ``backend``: ``"torch"`` (exact, blocked; the default) or ``"faiss"`` (exact ``IndexFlatIP``, built once
    here). Both give the same neighbours.
    """

    def __init__(self, features, paths: Sequence[str], backend: str = "torch", block_size: int = DEFAULT_BLOCK_SIZE):
        check_backend(backend)
        self.features = exact_features(features, "index features")
        self.paths = [str(p) for p in paths]
        if len(self.paths) != len(self.features):
            raise ValueError(f"{len(self.features)} feature rows but {len(self.paths)} paths")
        self.backend, self.block_size = backend, block_size
        self.config_hash: str | None = None  # of the model config that extracted the features, when known
        self._faiss = None
        if backend == "faiss":
            from retrieval.evaluation.faiss_backend import flat_index

            self._faiss = flat_index(self.features)

    @classmethod
    def load(cls, path: str | Path, backend: str = "torch") -> FeatureIndex:
        """The index in an ``.npz`` written by ``python -m retrieval extract``; errors name the file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no index file {path}; write one with python -m retrieval extract")
        problem = digest_problem(path)
        if problem is not None:
            raise ValueError(f"index {path} cannot be trusted: {problem}; extract it again")
        try:
            with np.load(path) as data:
                index = cls(data["features"], data["paths"].tolist(), backend=backend)
                index.config_hash = str(data["config_hash"]) if "config_hash" in data else None
                return index
        except (KeyError, ValueError, OSError) as error:
            raise ValueError(f"{path} is not an index written by python -m retrieval extract: {error}") from None

    def __len__(self) -> int:
        return len(self.paths)

    def search(self, queries, k: int) -> Neighbours:
        """The ``k`` (at most the index size) nearest indexed images of each query row (Q, D), best first."""
        queries = exact_features(queries, "queries")
        if queries.shape[1] != self.features.shape[1]:
            raise ValueError(f"queries have dimension {queries.shape[1]} but the index has {self.features.shape[1]}; "
                             "were they extracted with another model?")
        k = min(k, len(self))
        if self._faiss is not None:
            from retrieval.evaluation.faiss_backend import faiss_knn

            return faiss_knn(queries, self.features, k, None, self.block_size, index=self._faiss)
        return knn(queries, k, self.features, block_size=self.block_size)


def query_features(saved, images: Sequence[str | Path]) -> torch.Tensor:
    """(Q, D) descriptors of the query image files, extracted as the index was (same model and transform).
    An unreadable query is an error naming it (:class:`~retrieval.data.images.ImageLoadError`)."""
    from retrieval.data.images import load_image
    from retrieval.engine.extract import embed_multiscale, multiscale_settings

    transform = saved.transform()
    rows = []
    with torch.no_grad():
        for image in images:
            tensor = transform(load_image(image))[None].to(saved.device)
            rows.append(embed_multiscale(saved.model, tensor, **multiscale_settings(saved.cfg.eval)).cpu())
    return torch.cat(rows)
