"""Data: one parser per dataset into a typed :class:`Split`, images as a torch Dataset, batch samplers.

``from retrieval.data import ClassBalancedBatchSampler, ImageDataset, Split, load_splits``. The names are
imported on first use, so that tools needing one submodule (the download scripts) do not pay for torch.
"""
import importlib

_PUBLIC = {
    "ClassBalancedBatchSampler": "retrieval.data.samplers", "RandomBatchSampler": "retrieval.data.samplers",
    "ImageDataset": "retrieval.data.loading", "collate_skipping": "retrieval.data.loading",
    "Split": "retrieval.data.split", "DATASETS": "retrieval.data.split", "load_splits": "retrieval.data.split",
    "build_transform": "retrieval.data.transforms", "TransformConfig": "retrieval.data.transforms",
    "load_image": "retrieval.data.images", "ImageLoadError": "retrieval.data.images",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'retrieval.data' has no attribute {name!r}")
