"""Write a bundled dataset's images out as files, one folder per split and class: ``python -m retrieval data
export digits --output images/digits`` gives ``images/digits/<split>/<label>/<split>-<index>.png``, real image
files to try ``extract``, ``search`` and the qualitative figures on. Existing files are left as they are."""
from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from retrieval.data.split import load_splits
from retrieval.io import write_bytes


def export_images(name: str, output: str | Path, splits: list[str] | None = None, **options) -> list[Path]:
    """Write every image of the dataset ``name`` (one whose splits hold images in memory, as the bundled
    ``digits`` and ``synthetic``) as PNG under ``output``; the files, in split order. KeyError naming the
    splits when one asked for is missing; ValueError for a dataset whose images are files already."""
    available = load_splits(name, **options)
    chosen = splits or sorted(available)
    missing = [s for s in chosen if s not in available]
    if missing:
        raise KeyError(f"dataset {name!r} has no split {missing[0]!r}; it has {sorted(available)}")
    written = []
    for split_name in chosen:
        split = available[split_name]
        if split.images is None:
            raise ValueError(f"dataset {name!r} is made of image files already (under {split.root})")
        for i in range(len(split)):
            path = Path(output) / split_name / str(split.labels[i]) / f"{split_name}-{i:05d}.png"
            if not path.is_file():
                buffer = io.BytesIO()
                Image.fromarray(np.asarray(split.images[i])).save(buffer, format="PNG")
                write_bytes(path, buffer.getvalue())
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m retrieval data export", description=__doc__)
    p.add_argument("name", help="a bundled dataset: digits or synthetic")
    p.add_argument("--output", required=True, help="folder to write the images into")
    p.add_argument("--splits", nargs="+", help="default: every split")
    args = p.parse_args(argv)
    written = export_images(args.name, args.output, args.splits)
    print(f"{len(written)} images under {args.output}")
