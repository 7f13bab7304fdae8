"""A trained demo model in use: its qualitative figure, evaluation from the run directory, and search on image files.

One small run of the quick-start config (digits, fewer epochs) is trained for the module; every expectation is
computed here independently (the model applied image by image, float64 cosine ranking, a naive AP).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from retrieval.cli import main as cli
from retrieval.config import load_config
from retrieval.data.split import load_splits
from retrieval.data.transforms import build_transform
from retrieval.engine.checkpoint import read_checkpoint
from retrieval.engine.trainer import load_trained_model, train
from retrieval.evaluation.qualitative import COLOURS, CORRECT, PAD, QUERY, WRONG, cell_origin

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "demo" / "quickstart.yaml"
DEMO = {"train.epochs": 3, "train.schedule": {"name": "constant"}, "eval.every": 3}
THUMB = 96  # the figure's default thumbnail side: 12 pixels per pixel of an 8 x 8 digit
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("demo") / "run"
    train(load_config(QUICKSTART, DEMO), run, progress=False)
    return run


def reference_features(run: Path, images: list[np.ndarray]) -> np.ndarray:
    """The model applied to one image at a time, float64, L2-normalised."""
    cfg = load_config(run / "config.yaml")
    model = load_trained_model(cfg, read_checkpoint(run / "model.pt"), torch.device("cpu"))
    transform = build_transform(cfg.data.test_transform)
    with torch.no_grad():
        rows = [model.embed(transform(Image.fromarray(image).convert("RGB"))[None])[0].double() for image in images]
    features = torch.stack(rows).numpy()
    return features / np.linalg.norm(features, axis=1, keepdims=True)


def naive_ap(relevant_in_order: np.ndarray) -> float:
    hits = np.flatnonzero(relevant_in_order)
    return float(np.mean((np.arange(len(hits)) + 1) / (hits + 1)))


def cell_digit(figure: np.ndarray, row: int, column: int) -> np.ndarray:
    """The 8 x 8 grey digit shown in a cell, read back from the centres of its 12 x 12 pixel blocks."""
    x, y = cell_origin(row, column, THUMB)
    centres = PAD + 6 + 12 * np.arange(8)
    return figure[y + centres[:, None], x + centres[None, :], 0]


def test_qualitative_grid_shows_the_best_queries_and_their_ranking(demo_run, tmp_path):
    png = tmp_path / "grid.png"
    assert cli(["qualitative", str(demo_run), "--output", str(png), "--html", str(tmp_path / "grid.html"),
                "--select", "best", "--queries", "3", "--top-k", "5", "--quiet"]) == 0

    test = load_splits("digits")["test"]
    images = [np.asarray(test.images[i]) for i in range(len(test))]
    features = reference_features(demo_run, images)
    scores = features @ features.T
    np.fill_diagonal(scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :-1]  # the query itself (last) left out
    relevant = test.labels[order] == test.labels[:, None]
    ap = np.array([naive_ap(row) for row in relevant])
    best = np.argsort(-ap, kind="stable")[:3]

    figure = np.asarray(Image.open(png).convert("RGB"))
    for row, query in enumerate(best):
        expected = [(query, QUERY)] + [(item, CORRECT if ok else WRONG) for item, ok in
                                       zip(order[query, :5], relevant[query, :5])]
        for column, (item, mark) in enumerate(expected):
            x, y = cell_origin(row, column, THUMB)
            assert tuple(figure[y + 1, x + 1]) == COLOURS[mark], (row, column)
            assert np.array_equal(cell_digit(figure, row, column), images[item][..., 0]), (row, column, item)
    page = (tmp_path / "grid.html").read_text()
    assert page.count("src='data:image/png;base64,") == 3 * 6 and "http" not in page  # self-contained
    assert page.count("<img class='correct'") + page.count("<img class='wrong'") == 3 * 5
    assert page.count("<img class='correct'") == int(relevant[best, :5].sum())


def test_evaluate_run_dir_uses_the_runs_own_config(demo_run, tmp_path, capsys):
    assert cli(["evaluate", str(demo_run), "--quiet", "--output", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == pytest.approx(json.loads((demo_run / "metrics.json").read_text())["metrics"], abs=1e-6)
    capsys.readouterr()
    # an explicit override still applies on top of the run's config
    assert cli(["evaluate", str(demo_run), "eval.targets.test.protocol.args.ks=[3]", "--quiet"]) == 0
    assert "recall@3" in json.loads(capsys.readouterr().out)


def test_search_finds_the_query_then_its_class_mates(demo_run, tmp_path, capsys):
    folder = tmp_path / "images"
    assert cli(["data", "export", "digits", "--output", str(folder), "--splits", "train"]) == 0
    chosen = [path for label in (0, 1, 2) for path in sorted((folder / "train" / str(label)).glob("*.png"))[:4]]
    mine = tmp_path / "mine"
    for path in chosen:
        (mine / path.parent.name).mkdir(parents=True, exist_ok=True)
        (mine / path.parent.name / path.name).write_bytes(path.read_bytes())
    (mine / "broken.png").write_bytes(b"not an image")
    index = tmp_path / "index.npz"

    assert cli(["extract", str(demo_run), "--images", str(mine), "--output", str(index), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "12 images extracted" in captured.out and "1 unreadable images skipped" in captured.out
    assert f"cannot read image {mine / 'broken.png'}" in captured.err
    with np.load(index) as data:
        assert data["skipped"].tolist() == [str(mine / "broken.png")]
        assert sorted(data["paths"].tolist()) == sorted(str(mine / p.parent.name / p.name) for p in chosen)

    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as stopped:
        cli(["extract", str(demo_run), "--images", str(tmp_path / "empty"), "--output", str(tmp_path / "e.npz")])
    assert stopped.value.code == 1 and f"no images under folder {tmp_path / 'empty'}" in capsys.readouterr().err

    for label in (0, 1, 2):
        query = sorted((mine / str(label)).glob("*.png"))[0]
        for backend in ("torch", "faiss"):
            assert cli(["search", str(demo_run), "--index", str(index), "--query", str(query), "--top-k", "4",
                        "--backend", backend]) == 0
            results = [line.split()[-1] for line in capsys.readouterr().out.splitlines()[1:]]
            assert results[0] == str(query)
            assert {Path(p).parent.name for p in results[1:]} == {str(label)}, results
