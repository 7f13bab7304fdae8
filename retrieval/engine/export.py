"""Descriptors of a folder of one's own images (or a list of files), written to one ``.npz`` with their paths.

``python -m retrieval extract RUN_DIR --images FOLDER|LIST --output FILE.npz``. The images are cut into
shards of ``shard_size``; each shard is written whole (atomically) to ``FILE.npz.parts/`` as soon as it is
extracted, so a killed extraction of a large folder resumes at the first missing shard. When every shard is
there they are joined into ``FILE.npz`` and the parts are removed. An unreadable image is named and left out
(with its reason, in ``skipped``/``skipped_reasons``): extraction never drops a file silently.

The file holds ``features`` (N, D) float32 L2-normalised rows, ``paths`` (N,) the readable images in order,
``skipped`` and ``skipped_reasons`` the unreadable ones, ``model`` the model file and ``config_hash``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from retrieval.config import config_hash
from retrieval.data.images import ImageLoadError, load_image
from retrieval.data.loading import ImageDataset
from retrieval.data.split import Split
from retrieval.engine.checkpoint import write_digest
from retrieval.engine.extract import collate_by_size, embed_multiscale, multiscale_settings
from retrieval.engine.saved_model import SavedModel
from retrieval.io import atomic_open, write_json

log = logging.getLogger(__name__)
#: File name endings read as images when a folder is given (case-insensitive).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DEFAULT_SHARD_SIZE = 4096
MANIFEST = "manifest.json"


class NoImagesError(ValueError):
    """A folder or list file that names no image."""


@dataclass
class Export:
    """What an extraction produced: the output file, how many images it holds, the unreadable ones."""

    path: Path
    count: int
    skipped: list[str]
    reasons: list[str]


def list_images(source: str | Path) -> list[str]:
    """Image paths of ``source``: every file with an image extension under a folder (recursively, sorted), or
    the lines of a list file (blank lines and ``#`` comments ignored; relative paths are relative to the list's
    folder). FileNotFoundError when ``source`` does not exist; :class:`NoImagesError` naming it when it lists no
    image."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not paths:
            raise NoImagesError(f"no images under folder {source} (looked for files ending in "
                                f"{', '.join(IMAGE_EXTENSIONS)})")
        return paths
    if not source.is_file():
        raise FileNotFoundError(f"--images {source}: no such folder or list file")
    lines = [line.strip() for line in source.read_text().splitlines()]
    paths = [str(source.parent / line) for line in lines if line and not line.startswith("#")]
    if not paths:
        raise NoImagesError(f"list file {source} names no image (one path per line)")
    return paths


def _digest(values: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()[:16]


def _manifest(saved: SavedModel, paths: list[str], shard_size: int) -> dict:
    stat = saved.path.stat()
    return {"model": str(saved.path), "model_size": stat.st_size, "model_mtime": stat.st_mtime,
            "config_hash": config_hash(saved.cfg), "images": len(paths), "paths_digest": _digest(paths),
            "shard_size": shard_size}


def _claim_parts(parts: Path, manifest: dict) -> None:
    """Create the parts folder, or check that the one there was started with this model and image list."""
    existing = parts / MANIFEST
    if existing.is_file():
        previous = json.loads(existing.read_text())
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise ValueError(f"{parts} holds a partial extraction with another {', '.join(changed)}; delete "
                             "that folder to start over, or use another --output")
        return
    write_json(existing, manifest)


def extract_shard(saved: SavedModel, paths: list[str], batch_size: int, num_workers: int, bar) -> dict:
    """Features of ``paths`` (rows of the readable ones, in order), and the unreadable ones with reasons."""
    dataset = ImageDataset(Split("images", labels=np.zeros(len(paths), dtype=np.int64), paths=paths),
                           saved.transform(), bad_images="skip")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=collate_by_size)
    rows: dict[int, np.ndarray] = {}
    unreadable: list[int] = []
    with torch.no_grad():
        for batches, skipped in loader:
            unreadable += skipped
            for batch in batches:
                embedding = embed_multiscale(saved.model, batch.images.to(saved.device),
                                             **multiscale_settings(saved.cfg.eval))
                rows.update(zip(batch.indices.tolist(), embedding.cpu().numpy()))
            bar.update(sum(len(b.indices) for b in batches) + len(skipped))
    kept = sorted(rows)
    return {"features": np.stack([rows[i] for i in kept]) if kept else np.zeros((0, 0), np.float32),
            "paths": np.array([paths[i] for i in kept], dtype=str),
            "skipped": np.array([paths[i] for i in sorted(unreadable)], dtype=str),
            "skipped_reasons": np.array([_reason(paths[i]) for i in sorted(unreadable)], dtype=str)}


def _reason(path: str) -> str:
    try:
        load_image(path)
    except ImageLoadError as error:
        return str(error)
    return f"cannot read image {path}"


def _save_npz(path: Path, arrays: dict) -> None:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def export_features(saved: SavedModel, images: str | Path | list[str], output: str | Path, batch_size: int = 64,
                    shard_size: int = DEFAULT_SHARD_SIZE, num_workers: int = 0, progress: bool = True) -> Export:
    """Extract the descriptors of ``images`` (a folder, a list file, or a list of paths) with ``saved`` into
    ``output`` (see the module docstring for the format and resuming). An existing complete ``output`` is
    refused, so that an index is never overwritten by accident.

    Errors: :class:`NoImagesError` (nothing to extract), FileExistsError (output exists), ValueError (parts of
    another extraction in the way, or no readable image at all).
    """
    paths = list_images(images) if isinstance(images, (str, Path)) else [str(p) for p in images]
    if not paths:
        raise NoImagesError("no images were given")
    output = Path(output)
    if output.exists():
        raise FileExistsError(f"{output} exists; delete it or choose another --output")
    parts = output.with_name(output.name + ".parts")
    _claim_parts(parts, _manifest(saved, paths, shard_size))
    shards = [range(start, min(start + shard_size, len(paths))) for start in range(0, len(paths), shard_size)]
    done = [parts / f"shard-{number:06d}.npz" for number in range(len(shards))]
    bar = tqdm(total=len(paths), desc="extract", unit="image", disable=not progress,
               initial=sum(len(ids) for ids, file in zip(shards, done) if file.is_file()))
    with bar:
        for ids, file in zip(shards, done):
            if not file.is_file():
                _save_npz(file, extract_shard(saved, [paths[i] for i in ids], batch_size, num_workers, bar))
    loaded = [dict(np.load(file)) for file in done]
    joined = {key: np.concatenate([part[key] for part in loaded if key != "features" or len(part[key])] or
                                  [loaded[0][key]]) for key in loaded[0]}
    if not len(joined["paths"]):
        raise ValueError(f"none of the {len(paths)} images could be read, e.g. {joined['skipped_reasons'][0]}")
    _save_npz(output, {**joined, "model": np.array(str(saved.path)), "config_hash": np.array(config_hash(saved.cfg))})
    write_digest(output)  # search refuses an index whose content no longer matches
    shutil.rmtree(parts)
    skipped, reasons = joined["skipped"].tolist(), joined["skipped_reasons"].tolist()
    for reason in reasons[:10]:
        log.warning("skipped: %s", reason)
    return Export(output, len(joined["paths"]), skipped, reasons)
