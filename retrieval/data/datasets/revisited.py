"""Revisited Oxford and Paris (Radenovic et al. 2018): ``gnd_<name>.pkl`` and ``jpg/<image>.jpg``.

The ground-truth pickle (read with the restricted unpickler) is a dict with ``imlist`` (database
image names, no extension), ``qimlist`` (query names) and ``gnd``: per query a dict with ``bbx``
(x0, y0, x1, y1) and the ``easy``, ``hard`` and ``junk`` database indices.

The one split, ``test``, holds the queries first (role ``query``, boxes from ``bbx``: the protocol
crops queries, so configs set ``crop_boxes``), then the database (role ``gallery``, no box).
There are no class labels, so every label is -1; relevance is per query in ``extra["gnd"]``,
whose indices count database images only (index 0 = first gallery item).

Layout (filipradenovic/revisitop ``python/dataset.py`` and cnnimageretrieval-pytorch
``cirtorch/datasets/testdataset.py``): the pickle and ``jpg/`` share one folder, and an image is
``jpg/<name>.jpg``. naver/deep-image-retrieval (``dirtorch/datasets/generic.py``) keeps a name's own
extension when it has one; so does this parser. The folder's name does not matter (the listwise AP
authors' code calls it ``oxford5k``/``paris6k``, revisitop ``roxford5k``/``rparis6k``).

Optional R1M distractors (``distractors_root=``: the folder with ``revisitop1m.txt`` and ``jpg/``; a relative
path is taken beside the dataset's own folder, e.g. ``revisitop1m`` next to ``roxford5k`` under one data root)
are appended to the gallery with absolute paths; ``extra["num_distractors"]`` says how many.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from retrieval.data import safe_pickle
from retrieval.data.datasets.parsing import DatasetFormatError, find_file, format_error, read_lines, require_root
from retrieval.data.split import DATASETS, GALLERY, QUERY, Split

NO_LABEL = -1
RELEVANCE_KEYS = ("easy", "hard", "junk")


def read_ground_truth(path: Path) -> tuple[list[str], list[str], list[dict]]:
    """(database names, query names, per-query ground truth), checked against the documented layout."""
    data = safe_pickle.load(path)
    if not isinstance(data, dict) or not {"imlist", "qimlist", "gnd"} <= data.keys():
        found = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(f"{path}: expected a dict with keys imlist, qimlist, gnd; found {found}")
    imlist, qimlist, gnd = (list(data[key]) for key in ("imlist", "qimlist", "gnd"))
    if len(gnd) != len(qimlist):
        raise DatasetFormatError(f"{path}: {len(qimlist)} queries in qimlist but {len(gnd)} entries in gnd")
    checked = []
    for i, entry in enumerate(gnd):
        missing = [key for key in ("bbx", *RELEVANCE_KEYS) if not isinstance(entry, dict) or key not in entry]
        if missing:
            raise DatasetFormatError(f"{path}: gnd[{i}] (query {qimlist[i]}) lacks {missing}")
        bbx = np.asarray(entry["bbx"], dtype=np.float64).reshape(-1)
        if len(bbx) != 4:
            raise DatasetFormatError(f"{path}: gnd[{i}]['bbx'] has {len(bbx)} values, expected x0, y0, x1, y1")
        clean = {"bbx": bbx}
        for key in RELEVANCE_KEYS:
            index = np.asarray(entry[key]).reshape(-1)
            integral = index.dtype.kind in "iu" or (index.dtype.kind == "f" and np.all(index == np.round(index)))
            if index.size and (not integral or index.min() < 0 or index.max() >= len(imlist)):
                raise DatasetFormatError(f"{path}: gnd[{i}][{key!r}] holds values that are not database "
                                         f"indices 0..{len(imlist) - 1}")
            clean[key] = index.astype(np.int64)
        checked.append(clean)
    return [str(n) for n in imlist], [str(n) for n in qimlist], checked


def read_distractors(folder: str, list_name: str) -> list[str]:
    """Absolute paths of the R1M images named (relative to ``jpg/``) in the list file."""
    root = require_root(folder, "revisitop1m")
    path = find_file(root, [list_name], "revisitop1m")
    paths = []
    for lineno, line in read_lines(path):
        if len(line.split()) != 1:
            raise format_error(path, lineno, f"{line!r} is not one image name", "<image path relative to jpg/>")
        paths.append(os.path.join(root, "jpg", line))
    return paths


def image_file(name: str) -> str:
    """``jpg/<name>.jpg``, or ``jpg/<name>`` when the name already ends in an extension."""
    return f"jpg/{name}" if os.path.splitext(name)[1] else f"jpg/{name}.jpg"


def revisited(name: str, root: str | None, distractors_root: str | None,
              distractors_list: str) -> dict[str, Split]:
    folder = require_root(root, name)
    imlist, qimlist, gnd = read_ground_truth(find_file(folder, [f"gnd_{name}.pkl"], name))
    if distractors_root and not os.path.isabs(distractors_root):
        # beside the dataset, so one data root (--data-root, $RETRIEVAL_DATA_ROOT) holds both
        distractors_root = os.path.join(os.path.dirname(os.path.abspath(folder)), distractors_root)
    distractors = read_distractors(distractors_root, distractors_list) if distractors_root else []
    gallery = [image_file(image) for image in imlist] + distractors
    boxes = np.full((len(qimlist) + len(gallery), 4), np.nan)
    boxes[: len(qimlist)] = [entry["bbx"] for entry in gnd]
    split = Split("test", labels=np.full(len(boxes), NO_LABEL), paths=[image_file(q) for q in qimlist] + gallery,
                  root=str(folder), boxes=boxes, roles=np.array([QUERY] * len(qimlist) + [GALLERY] * len(gallery)),
                  extra={"gnd": gnd, "num_distractors": len(distractors)})
    return {"test": split}


@DATASETS.register("roxford5k")
def roxford5k(root: str | None = None, distractors_root: str | None = None,
              distractors_list: str = "revisitop1m.txt") -> dict[str, Split]:
    """Revisited Oxford: 70 queries, 4,993 database images (+ R1M when ``distractors_root`` is given)."""
    return revisited("roxford5k", root, distractors_root, distractors_list)


@DATASETS.register("rparis6k")
def rparis6k(root: str | None = None, distractors_root: str | None = None,
             distractors_list: str = "revisitop1m.txt") -> dict[str, Split]:
    """Revisited Paris: 70 queries, 6,322 database images (+ R1M when ``distractors_root`` is given)."""
    return revisited("rparis6k", root, distractors_root, distractors_list)
