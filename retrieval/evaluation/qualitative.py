"""Qualitative retrieval figures: queries and their top-k retrievals, correct ones marked.

A figure is a grid: one row per query, the query first (blue frame) then its k best retrievals, each framed
green when relevant, red when not, and greyed (grey frame, faded image) when the revisited Oxford/Paris
protocol ignores it (junk). Queries are drawn at random with a seed, or chosen as the best or worst by
average precision (AP over the full ranking). PNG for a paper or a slide; a self-contained HTML page (images
embedded) for large k. Smooth-AP (Brown et al., ECCV 2020) shows such a figure for iNaturalist.

Rankings follow the convention of :mod:`retrieval.evaluation.knn` (decreasing cosine similarity, ties by
index); the APs are those of :func:`~retrieval.evaluation.metrics.per_query_metrics` (label protocols) and
of :mod:`retrieval.evaluation.revisited` (revisited protocol, junk taken out of the ranking).
"""
from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from retrieval.data.split import Split
from retrieval.evaluation.knn import as_features, knn
from retrieval.evaluation.metrics import per_query_metrics
from retrieval.evaluation.protocols import revisited_scores, role_indices
from retrieval.evaluation.revisited import SETUPS, _indices, average_precision, positive_places

WRONG, CORRECT, JUNK, QUERY, UNMARKED = 0, 1, -1, 2, 3
COLOURS = {QUERY: (31, 119, 180), CORRECT: (44, 160, 44), WRONG: (214, 39, 40), JUNK: (150, 150, 150),
           UNMARKED: (90, 90, 90)}
CSS_CLASS = {QUERY: "query", CORRECT: "correct", WRONG: "wrong", JUNK: "junk", UNMARKED: "unmarked"}
SELECTIONS = ("random", "best", "worst", "best_worst")
#: Protocols whose split marks queries and gallery; every other protocol ranks each item against all others.
QUERY_GALLERY_PROTOCOLS = ("query_gallery", "revisited")
PAD, BORDER, LABEL, GAP = 6, 4, 14, 12  # pixels: frame margin, frame width, caption band, query/result gap
JUNK_FADE = 0.6  # how far a junk image is blended towards grey


@dataclass
class Retrievals:
    """Rows of split item indices: ``queries`` (Q,), ``retrieved`` (Q, k) best first with their cosine
    ``scores`` (Q, k) and ``marks`` (Q, k) (CORRECT, WRONG or JUNK), and each query's ``ap`` (Q,)
    over the full ranking (NaN for a query without any relevant item)."""

    queries: np.ndarray
    retrieved: np.ndarray
    scores: np.ndarray
    marks: np.ndarray
    ap: np.ndarray

    def take(self, rows) -> Retrievals:
        rows = np.asarray(rows, dtype=np.int64)
        return Retrievals(self.queries[rows], self.retrieved[rows], self.scores[rows], self.marks[rows],
                          self.ap[rows])


def rank_by_labels(features, split: Split, k: int, query_gallery: bool) -> Retrievals:
    """Top-k of every query, relevant meaning "same label": leave-one-out over all items, or role "query"
    against role "gallery" when ``query_gallery``."""
    features, labels = as_features(features), torch.as_tensor(split.labels)
    if query_gallery:
        query, gallery = role_indices(split)
        found = knn(features[query], min(k, len(gallery)), features[gallery])
        ap = per_query_metrics(features[query], labels[query], features[gallery], labels[gallery], ks=(1,))
    else:
        query, gallery = np.arange(len(split)), np.arange(len(split))
        found = knn(features, min(k, len(split) - 1))
        ap = per_query_metrics(features, labels, ks=(1,))
    retrieved = gallery[found.indices.cpu().numpy()]
    marks = (split.labels[retrieved] == split.labels[query][:, None]).astype(np.int8)
    average = np.where(ap.has_positives.numpy(), ap.values["map"].numpy(), np.nan)
    return Retrievals(query, retrieved, found.scores.cpu().numpy(), marks, average)


def rank_revisited(features, split: Split, k: int, setup: str = "medium", qe_k: int = 0,
                   qe_alpha: float = 0.0) -> Retrievals:
    """Top-k of every revisited Oxford/Paris query (``split.extra["gnd"]``), marked for ``setup``
    ("easy", "medium" or "hard"): its positives CORRECT, its ignored images JUNK (left in the ranking, so
    they can be seen, but out of the AP), the rest WRONG. Scored as the protocol scores them
    (:func:`~retrieval.evaluation.protocols.revisited_scores`, α-QE with ``qe_k`` and ``qe_alpha``)."""
    if setup not in SETUPS:
        raise ValueError(f"unknown revisited setup {setup!r}; choose one of {', '.join(SETUPS)}")
    query, database, scores = revisited_scores(features, split, qe_k, qe_alpha)
    scores = scores.numpy()
    positive_keys, ignored_keys = SETUPS[setup]
    k = min(k, len(database))
    rows = {"retrieved": [], "scores": [], "marks": [], "ap": []}
    for q, entry in enumerate(split.extra["gnd"]):
        order = np.argsort(-scores[q], kind="stable")
        positives = _indices(entry, positive_keys, q, len(database))
        ignored = _indices(entry, ignored_keys, q, len(database))
        kind = np.full(len(database), WRONG, dtype=np.int8)
        kind[ignored] = JUNK
        kind[positives] = CORRECT
        rows["retrieved"].append(database[order[:k]])
        rows["scores"].append(scores[q, order[:k]])
        rows["marks"].append(kind[order[:k]])
        rows["ap"].append(average_precision(positive_places(order, positives, ignored)) if len(positives)
                          else np.nan)
    return Retrievals(query, *(np.asarray(rows[key]) for key in ("retrieved", "scores", "marks", "ap")))


def rank_split(features, split: Split, protocol: str = "leave_one_out", k: int = 8,
               setup: str = "medium", protocol_args: dict | None = None) -> Retrievals:
    """Top-k retrievals of every query of ``split`` (features (N, D), row i = item i) as ``protocol`` defines
    queries and relevance (see :data:`QUERY_GALLERY_PROTOCOLS`). Other protocols rank every item against all the
    others by label, as ``leave_one_out`` does: VehicleID's "all" gallery, and the faces protocol item by item
    (not its per-video group means). ``protocol_args``: the protocol's config arguments (the revisited
    protocol's α-QE ``qe_k`` and ``qe_alpha`` change its ranking; the others' do not)."""
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    if protocol == "revisited":
        if "gnd" not in split.extra:
            raise ValueError(f"split {split.name!r} has no extra['gnd'] ground truth for the revisited protocol")
        expansion = {key: value for key, value in (protocol_args or {}).items() if key in ("qe_k", "qe_alpha")}
        return rank_revisited(features, split, k, setup, **expansion)
    return rank_by_labels(features, split, k, query_gallery=protocol in QUERY_GALLERY_PROTOCOLS)


def choose_queries(retrievals: Retrievals, count: int, select: str = "random", seed: int = 0) -> Retrievals:
    """``count`` rows: drawn at random with ``seed`` (in query order), or the best / worst by AP (best first /
    worst first, ties by query order), or ``best_worst`` (the best half then the worst half). Queries without
    a relevant item have no AP and are never chosen as best or worst."""
    if select not in SELECTIONS:
        raise ValueError(f"unknown query selection {select!r}; choose one of {', '.join(SELECTIONS)}")
    if select == "random":
        rng = np.random.default_rng(seed)
        return retrievals.take(np.sort(rng.choice(len(retrievals.queries), min(count, len(retrievals.queries)),
                                                  replace=False)))
    scored = np.flatnonzero(~np.isnan(retrievals.ap))
    by_ap = scored[np.argsort(-retrievals.ap[scored], kind="stable")]
    if select == "best":
        return retrievals.take(by_ap[:count])
    worst = by_ap[np.argsort(retrievals.ap[by_ap], kind="stable")]
    if select == "worst":
        return retrievals.take(worst[:count])
    best = by_ap[:(count + 1) // 2]
    return retrievals.take(np.concatenate([best, [w for w in worst if w not in best][:count // 2]]).astype(int))


# --------------------------------------------------------------------------------------------- drawing
@dataclass
class Cell:
    """One image of the grid with its caption and mark (QUERY, CORRECT, WRONG, JUNK or UNMARKED)."""

    image: Image.Image
    caption: str
    mark: int


def thumbnail(image: Image.Image, size: int, mark: int = UNMARKED) -> Image.Image:
    """``image`` fitted into a ``size`` x ``size`` white square (aspect kept; small images enlarged with
    nearest-neighbour so that pixels stay sharp), faded towards grey when ``mark`` is JUNK."""
    image = image.convert("RGB")
    scale = size / max(image.size)
    resample = Image.NEAREST if scale >= 1 else Image.LANCZOS
    fitted = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), resample)
    square = Image.new("RGB", (size, size), "white")
    square.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    if mark == JUNK:
        square = Image.blend(square, Image.new("RGB", square.size, COLOURS[JUNK]), JUNK_FADE)
    return square


def cell_origin(row: int, column: int, thumb: int) -> tuple[int, int]:
    """Top-left pixel (x, y) of the frame of a cell; column 0 is the query."""
    width, height = thumb + 2 * PAD, thumb + 2 * PAD + LABEL
    return column * width + (GAP if column else 0), row * height


def draw_grid(rows: Sequence[Sequence[Cell]], thumb: int = 96) -> Image.Image:
    """The grid of ``rows`` (each the query cell then its retrievals) as one RGB image; cell (r, c) has its
    frame at :func:`cell_origin` and its thumbnail ``PAD`` pixels inside."""
    columns = max(len(row) for row in rows)
    width = cell_origin(0, columns, thumb)[0]
    canvas = Image.new("RGB", (width, cell_origin(len(rows), 0, thumb)[1]), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            x, y = cell_origin(r, c, thumb)
            side = thumb + 2 * PAD
            draw.rectangle([x, y, x + side - 1, y + side - 1], outline=COLOURS[cell.mark], width=BORDER)
            canvas.paste(thumbnail(cell.image, thumb, cell.mark), (x + PAD, y + PAD))
            draw.text((x + PAD, y + side), cell.caption[: side // 6], fill=(0, 0, 0))  # about 6 pixels a letter
    return canvas


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def grid_html(rows: Sequence[Sequence[Cell]], title: str, thumb: int = 128) -> str:
    """A self-contained HTML page of the grid (thumbnails embedded as PNG data), one line per query."""
    style = " ".join(f".{name} {{border: 4px solid rgb{COLOURS[mark]};}}" for mark, name in CSS_CLASS.items())
    lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title>",
             f"<style>body {{font-family: sans-serif;}} figure {{display: inline-block; margin: 2px; width: "
             f"{thumb + 8}px; vertical-align: top;}} figcaption {{font-size: 11px; overflow-wrap: anywhere;}} "
             f".row {{white-space: nowrap; overflow-x: auto;}} {style}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>",
             "<p>frame: blue query, green relevant, red not relevant, grey ignored (junk)</p>"]
    for row in rows:
        lines.append("<div class='row'>")
        for cell in row:
            lines.append(f"<figure><img class='{CSS_CLASS[cell.mark]}' width='{thumb}' height='{thumb}' "
                         f"src='{_data_uri(thumbnail(cell.image, thumb, cell.mark))}'>"
                         f"<figcaption>{html.escape(cell.caption)}</figcaption></figure>")
        lines.append("</div>")
    lines.append("</body></html>")
    return "\n".join(lines) + "\n"


def retrieval_cells(retrievals: Retrievals, image_of: Callable[[int], Image.Image],
                    name_of: Callable[[int], str]) -> list[list[Cell]]:
    """Grid rows of ``retrievals``: the query captioned with its AP, each retrieval with its score."""
    rows = []
    for q, item in enumerate(retrievals.queries):
        ap = retrievals.ap[q]
        head = Cell(image_of(int(item)), f"{name_of(int(item))} AP {ap:.2f}" if not np.isnan(ap)
                    else name_of(int(item)), QUERY)
        rows.append([head] + [Cell(image_of(int(i)), f"{s:.3f} {name_of(int(i))}", int(m))
                              for i, s, m in zip(retrievals.retrieved[q], retrievals.scores[q], retrievals.marks[q])])
    return rows


def write_figure(rows: Sequence[Sequence[Cell]], png: str | Path | None = None, html_path: str | Path | None = None,
                 title: str = "retrievals", thumb: int = 96) -> None:
    """Write the grid as a PNG and/or a self-contained HTML page (atomically)."""
    from retrieval.io import write_bytes, write_text

    if png is not None:
        buffer = io.BytesIO()
        draw_grid(rows, thumb).save(buffer, format="PNG")
        write_bytes(png, buffer.getvalue())
    if html_path is not None:
        write_text(html_path, grid_html(rows, title, max(thumb, 128)))
