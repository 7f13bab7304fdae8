"""The typed split every dataset parser returns, and the dataset registry."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrieval.registry import Registry

#: ``@DATASETS.register("name")`` on a function ``(root, **options) -> dict[str, Split]``.
DATASETS: Registry = Registry("dataset")

QUERY, GALLERY = "query", "gallery"


@dataclass
class Split:
    """One evaluation or training set.

    Exactly one image source is set: ``paths`` (files, relative to ``root``) or ``images``
    (any sequence of HxWxC uint8 arrays, possibly lazy). ``boxes`` are (x0, y0, x1, y1)
    pixel boxes, a row of NaN meaning "no box". ``roles`` marks items ``"query"`` or
    ``"gallery"`` for query->gallery protocols (None: leave-one-out over all items).
    ``groups`` ties items into instances (IJB-C: frames of one video). ``extra`` carries
    protocol data such as the revisited ground truth.
    """

    name: str
    labels: np.ndarray
    paths: list[str] | None = None
    root: str | None = None
    images: Sequence[np.ndarray] | None = None
    boxes: np.ndarray | None = None
    roles: np.ndarray | None = None
    groups: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if (self.paths is None) == (self.images is None):
            raise ValueError(f"split {self.name!r}: give exactly one of paths or images")
        if len(self.paths if self.paths is not None else self.images) != n:
            raise ValueError(f"split {self.name!r}: {n} labels but a different number of images")
        for attr in ("boxes", "roles", "groups"):
            value = getattr(self, attr)
            if value is not None:
                value = np.asarray(value)
                if len(value) != n:
                    raise ValueError(f"split {self.name!r}: {attr} has {len(value)} rows, expected {n}")
                setattr(self, attr, value)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(np.unique(self.labels))

    def subset(self, index: np.ndarray, name: str | None = None) -> Split:
        """The items at ``index`` (an index array or boolean mask), extra kept as is."""
        index = np.arange(len(self))[np.asarray(index)]
        pick = lambda v: None if v is None else np.asarray(v)[index]  # noqa: E731
        return Split(
            name=name or self.name,
            labels=self.labels[index],
            paths=None if self.paths is None else [self.paths[i] for i in index],
            root=self.root,
            images=None if self.images is None else _Indexed(self.images, index),
            boxes=pick(self.boxes),
            roles=pick(self.roles),
            groups=pick(self.groups),
            extra=self.extra,
        )


class _Indexed:
    """A lazy view of a sequence at given indices (keeps synthetic data lazy)."""

    def __init__(self, base, index):
        self.base, self.index = base, np.asarray(index)

    def __len__(self):
        return len(self.index)

    def __getitem__(self, i):
        return self.base[int(self.index[i])]


def load_splits(name: str, root: str | None = None, **options) -> dict[str, Split]:
    """Parse dataset ``name`` (registered in :data:`DATASETS`) into its named splits."""
    import retrieval.data.datasets  # noqa: F401  (registers the datasets)

    return DATASETS.get(name)(root=root, **options)
