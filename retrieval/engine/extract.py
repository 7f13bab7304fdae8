"""Descriptors of every image of a dataset, in dataset order, for evaluation or whitening.

Query bounding-box crops (the revisited Oxford/Paris protocol crops each query to its box) are
the dataset's business: build the :class:`~retrieval.data.loading.ImageDataset` with
``crop_boxes=True``. Images of different sizes (the revisited benchmarks keep aspect ratios)
are batched by size: items of one loader batch that share a size are stacked together, the
others run in their own smaller batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from retrieval.data.images import ImageLoadError, UnreadableImagesError
from retrieval.data.loading import Batch, ImageDataset, collate_skipping
from retrieval.evaluation.postprocess import aggregate_scales


def multiscale_settings(eval_cfg) -> dict:
    """The evaluation config's multi-scale settings, as keyword arguments of :func:`embed_multiscale` and
    :func:`extract_features`: every descriptor of a model (evaluation, export, search, figures) is made alike."""
    return {"scales": tuple(eval_cfg.scales), "scale_power": eval_cfg.scale_power,
            "antialias": eval_cfg.scale_antialias}


def collate_by_size(items) -> tuple[list[Batch], list[int]]:
    """Readable items stacked into one batch per image size; the indices of unreadable ones."""
    groups: dict[tuple[int, ...], list] = {}
    for item in items:
        if item[0] is not None:
            groups.setdefault(tuple(item[0].shape), []).append(item)
    return [collate_skipping(group) for group in groups.values()], [item[2] for item in items if item[0] is None]


def embed_multiscale(model, images: torch.Tensor, scales: Sequence[float] = (1.0,),
                     scale_power: float = 1.0, antialias: bool = True) -> torch.Tensor:
    """The model's descriptors of the images resized (bilinear; antialiased unless ``antialias=False``,
    as cnnimageretrieval-pytorch resizes) by each scale, combined by
    :func:`~retrieval.evaluation.postprocess.aggregate_scales` with ``power = scale_power``.

    A model's whitening is applied once, to the combined descriptor, as both landmark model zoos do
    (cnnimageretrieval-pytorch whitens its multi-scale vector; deep-image-retrieval pools its
    transforms, then whitens).
    """
    if tuple(scales) == (1.0,):
        return model.embed(images).float()
    whitening = getattr(model, "whitening", None)
    embed = model.embed if whitening is None else (lambda x: model(x)["embedding"])
    descriptors = [embed(images if scale == 1.0 else F.interpolate(images, scale_factor=scale, mode="bilinear",
                                                                   align_corners=False, antialias=antialias)).float()
                   for scale in scales]
    combined = aggregate_scales(descriptors, scale_power)
    return combined if whitening is None else whitening(combined).float()


def extract_features(model, dataset: ImageDataset, batch_size: int = 64, device: str | torch.device = "cpu",
                     num_workers: int = 0, scales: Sequence[float] = (1.0,), progress: bool = True,
                     amp: bool = False, scale_power: float = 1.0, antialias: bool = True) -> torch.Tensor:
    """(N, D) float32 descriptors ``model.embed`` gives the N items of ``dataset``, row i = item i.

    The model is moved to ``device`` and run in eval mode without autograd (its previous mode
    is restored after). ``scales``, ``scale_power``, ``antialias``: see :func:`embed_multiscale`.
    ``amp``: run the model under autocast (float16 on CUDA, bfloat16 on CPU). An image that could
    not be read (a dataset built with ``bad_images="skip"``) is an
    :class:`~retrieval.data.images.UnreadableImagesError` naming every such image with its reason:
    evaluation never silently drops an item.
    """
    device = torch.device(device)
    if len(dataset) == 0:
        raise ValueError("extract_features: the dataset is empty")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_by_size, pin_memory=device.type == "cuda")
    mixed = (torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)
             if amp else nullcontext())
    features, skipped = None, []
    was_training = model.training
    model.to(device).eval()
    try:
        with torch.no_grad(), mixed:
            for batches, unreadable in tqdm(loader, desc="extract", unit="batch", disable=not progress):
                skipped += unreadable
                for batch in batches:
                    embedding = embed_multiscale(model, batch.images.to(device, non_blocking=True), scales,
                                                 scale_power, antialias)
                    if features is None:
                        features = torch.empty(len(dataset), embedding.shape[1])
                    features[batch.indices] = embedding.cpu()
    finally:
        model.train(was_training)
    if skipped:
        raise UnreadableImagesError(dataset.split.name, [_why_unreadable(dataset, i) for i in sorted(skipped)])
    return features


def _why_unreadable(dataset: ImageDataset, index: int) -> tuple[str, str]:
    """(path, the loader's error naming it) of an item the loader skipped; only bad items are read again."""
    name = dataset.path(index) if dataset.split.paths is not None else f"item {index}"
    try:
        dataset.pil_image(index)
    except ImageLoadError as error:
        return name, str(error)
    return name, f"cannot read image {name}: failed while extracting, readable now"
