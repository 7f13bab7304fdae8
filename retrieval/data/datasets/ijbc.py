"""IJB-C (Maze et al. 2018) as a face-retrieval test set, the way Smooth-AP (Brown et al. 2020) uses it.

Parsed file: the release's metadata table, ``protocols/ijbc_metadata.csv`` (or ``ijbc_metadata.csv``
in the root, or any file given as ``metadata=``): comma-separated with a header line, one face per
row. Columns read (names as in the release; the media column can be renamed with ``media_column=``):

- ``SUBJECT_ID``: the identity (integer), the label;
- ``FILENAME``: the image, relative to ``images/`` (``img/...`` still images, ``frames/...`` video frames);
- ``SIGHTING_ID``: the still image or video the face comes from (all frames of one video share it).
  Source: the IJB-C protocol files' columns ``TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID,FACE_X,...`` as
  public readers list them, which group a template's media by ``SIGHTING_ID`` (one row: an image; several:
  a video's frames). The metadata table's own column list is not confirmed; another column can be chosen;
- ``FACE_X, FACE_Y, FACE_WIDTH, FACE_HEIGHT`` (optional): the face box, giving ``boxes``.

An instance is one subject in one media: a still image, or every frame of a video (whose
embedding is the mean of its frames'). ``groups`` numbers the instances. Identities with fewer
than ``min_instances`` (5) instances are removed, and how many is recorded in ``extra``.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from retrieval.data.datasets.parsing import DatasetFormatError, find_file, parse_number, require_root, xywh_to_corners
from retrieval.data.split import DATASETS, Split

BOX_COLUMNS = ("FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT")
METADATA = ("protocols/ijbc_metadata.csv", "ijbc_metadata.csv")


def read_metadata(path: Path, media_column: str) -> tuple[list[str], np.ndarray, list[str], np.ndarray | None]:
    """(file names, subject ids, media ids, boxes or None) of every row."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = [name.strip() for name in next(rows, [])]
        wanted = ["SUBJECT_ID", "FILENAME", media_column]
        missing = [name for name in wanted if name not in header]
        if missing:
            hint = " (choose the media column with media_column=...)" if media_column in missing else ""
            raise DatasetFormatError(f"{path}:1: no column {missing}; the header has {header}{hint}")
        columns = [header.index(name) for name in wanted]
        has_boxes = all(name in header for name in BOX_COLUMNS)
        box_columns = [header.index(name) for name in BOX_COLUMNS] if has_boxes else []
        files, subjects, media, boxes = [], [], [], []
        for lineno, row in enumerate(rows, 2):
            if not row:
                continue
            if len(row) != len(header):
                raise DatasetFormatError(f"{path}:{lineno}: {len(row)} columns, the header has {len(header)}")
            subject, filename, medium = (row[i].strip() for i in columns)
            subjects.append(parse_number(subject, int, path, lineno, "SUBJECT_ID", ",".join(header)))
            files.append(filename)
            media.append(medium)
            if has_boxes:
                boxes.append([parse_number(row[i], float, path, lineno, header[i], ",".join(header))
                              if row[i].strip() else np.nan for i in box_columns])
    return files, np.asarray(subjects, dtype=np.int64), media, xywh_to_corners(boxes) if has_boxes else None


@DATASETS.register("ijbc")
def ijbc(root: str | None = None, metadata: str | None = None, media_column: str = "SIGHTING_ID",
         image_dir: str = "images", min_instances: int = 5) -> dict[str, Split]:
    """``{"test"}``: faces of identities with at least ``min_instances`` instances, grouped into instances."""
    folder = require_root(root, "ijbc")
    path = find_file(folder, [metadata] if metadata else list(METADATA), "ijbc")
    files, subjects, media, boxes = read_metadata(path, media_column)
    instance_keys = [f"{subject}\t{medium}" for subject, medium in zip(subjects, media)]
    _, instances = np.unique(np.asarray(instance_keys, dtype=str), return_inverse=True)
    instance_subject = np.zeros(instances.max() + 1 if len(instances) else 0, dtype=np.int64)
    instance_subject[instances] = subjects
    identities, counts = np.unique(instance_subject, return_counts=True)
    kept_identities = identities[counts >= min_instances]
    keep = np.isin(subjects, kept_identities)
    _, groups = np.unique(instances[keep], return_inverse=True)
    split = Split("test", labels=subjects[keep], paths=[f for f, k in zip(files, keep) if k],
                  root=str(folder / image_dir), boxes=None if boxes is None else boxes[keep],
                  groups=groups.astype(np.int64),
                  extra={"metadata": str(path), "min_instances": min_instances,
                         "removed_identities": int(len(identities) - len(kept_identities)),
                         "removed_images": int((~keep).sum())})
    return {"test": split}
