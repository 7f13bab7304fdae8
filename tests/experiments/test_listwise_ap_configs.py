"""Listwise AP experiments (experiments/listwise_ap): every config and table file validates at paper and demo
scale, the columns are metrics the rows' evaluation really produces, and every published number is the one
docs/sources.md prints, under the source that prints it."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval.config import load_config
from retrieval.data.split import GALLERY, QUERY, Split, load_splits
from retrieval.evaluation import PROTOCOLS
from retrieval.tables.results import read_outcomes
from retrieval.tables.runner import TableRun, paper_demo_overrides, resolve_config
from retrieval.tables.spec import is_table_file, load_published, load_table

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "experiments" / "listwise_ap"
REFERENCE = REPO / "docs" / "sources.md"  # the repository's copy of the published numbers
TABLE_FILES = sorted(p for p in PAPER.glob("*.yaml") if is_table_file(p))
CONFIG_FILES = sorted(p for p in PAPER.glob("*.yaml") if p not in TABLE_FILES
                      and p.name not in ("demo.yaml", "published.yaml"))

#: Issue 6's Listwise AP tables: whitening on/off, ceteris paribus, state of the art (with and without R1M),
#: bins M, batch size B, class sampling, tie-aware.
REQUIRED_TABLES = {"whitening", "ceteris_paribus", "sota", "sota_r1m", "num_bins", "batch_size", "class_sampling",
                   "tie_aware"}

#: Our metric key -> the column of docs/sources.md's Source A table it transcribes.
SOURCE_A_COLUMNS = {"roxford5k/medium/map": "ROxf M", "roxford5k/hard/map": "ROxf H",
                    "rparis6k/medium/map": "RPar M", "rparis6k/hard/map": "RPar H"}
#: published.yaml entry -> the row of docs/sources.md's Source A table it transcribes.
SOURCE_A_ROWS = {"zoo_resnet101_tl_mac": "ResNet-101, TL, MAC", "zoo_resnet101_tl_gem": "ResNet-101, TL, GeM",
                 "zoo_resnet50_ap_gem": "ResNet-50, AP, GeM", "zoo_resnet101_ap_gem": "ResNet-101, AP, GeM"}
#: Source B's dataset abbreviations -> our evaluation target names.
SOURCE_B_TARGETS = {"ROxf": "roxford5k", "RPar": "rparis6k"}
DIFFICULTIES = {"M": "medium", "H": "hard"}


def reference_text() -> str:
    """The Listwise AP section of docs/sources.md."""
    text = REFERENCE.read_text()
    start = text.index("## Listwise AP")
    return text[start:text.index("\n## ", start + 1)]


def source_block(section: str, letter: str) -> str:
    """The text of ``Source <letter>`` up to the next source."""
    start = section.index(f"Source {letter}")
    following = re.search(r"\nSource [A-Z]", section[start + 1:])
    return section[start:start + 1 + following.start()] if following else section[start:]


def source_a_table(section: str) -> dict[str, dict[str, float]]:
    """Source A's markdown table: model row -> column -> value."""
    lines = [line for line in source_block(section, "A").splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:  # header, separator, rows
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = {column: float(value) for column, value in zip(header[1:], cells[1:])}
    return table


def source_b_values(section: str) -> dict[str, float]:
    """Source B's "ROxf M 67.5 (+R1M 47.5), ..." as our metric keys, alone and +R1M."""
    values = {}
    for dataset, difficulty, alone, r1m in re.findall(r"(ROxf|RPar) ([MH]) ([\d.]+) \(\+R1M ([\d.]+)\)",
                                                      source_block(section, "B")):
        target, level = SOURCE_B_TARGETS[dataset], DIFFICULTIES[difficulty]
        values[f"{target}/{level}/map"] = float(alone)
        values[f"{target}_r1m/{level}/map"] = float(r1m)
    return values


def test_every_table_of_the_issue_is_there():
    assert {p.stem for p in TABLE_FILES} == REQUIRED_TABLES


def test_published_values_are_published_md_under_their_source():
    section = reference_text()
    sources, entries = load_published(PAPER / "published.yaml")
    zoo, table3 = source_a_table(section), source_b_values(section)
    assert len(table3) == 8, "Source B should give Medium and Hard, alone and +R1M, for ROxf and RPar"
    for key, entry in entries.items():
        if entry.source == sources["A"]:
            row = zoo[SOURCE_A_ROWS[key]]
            assert entry.values == {metric: row[column] for metric, column in SOURCE_A_COLUMNS.items()}, key
        else:
            assert entry.source == sources["B"], f"{key}: unknown source {entry.source!r}"
            assert entry.values == table3, key
    assert "Source A" in sources["A"] and "Source B" in sources["B"]
    assert "docs/sources.md" in sources["A"] and "docs/sources.md" in sources["B"]


def test_every_published_entry_is_shown_by_a_row():
    _, entries = load_published(PAPER / "published.yaml")
    shown = set()
    for path in TABLE_FILES:
        table = load_table(path)
        for row in table.rows:
            if row.published is not None:
                assert set(row.published.values) <= set(table.metrics), f"{path.name}: {row.name!r}"
                shown.update(key for key, entry in entries.items() if entry == row.published)
    assert shown == set(entries)


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_base_config_validates(path):
    load_config(path)


def test_paper_constants_of_the_base_config():
    """What docs/sources.md and issue 5 state about the paper's setting, read from the resolved config."""
    cfg = load_config(PAPER / "landmarks_resnet101.yaml")
    loss = cfg.losses["ranking"]
    assert (loss.name, loss.args["num_bins"], loss.args["class_weighted"], loss.args["tie_aware"]) == \
        ("quantized_ap", 20, True, False)
    assert cfg.data.batch_size == 4096 and cfg.data.dataset.name == "landmarks_clean"
    assert cfg.train.multistage and cfg.train.freeze_bn and cfg.train.multistage_chunk < cfg.data.batch_size
    assert cfg.model.backbone.name == "resnet101" and cfg.model.backbone.args["pretrained"] == "IMAGENET1K_V1"
    assert cfg.model.head.args == {"pooling": "gem", "pooling_args": {"p": 3.0, "learn_p": True}, "dim": 2048}
    assert (cfg.model.whitening.name, cfg.model.whitening.args) == ("pca", {"power": 0.25})
    assert {name: (t.dataset.name, t.protocol.name) for name, t in cfg.eval.targets.items()} == \
        {"roxford5k": ("roxford5k", "revisited"), "rparis6k": ("rparis6k", "revisited")}
    assert cfg.eval.scales == [1.0] and cfg.data.crop_boxes and cfg.data.test_transform.max_size == 1024
    r1m = load_config(PAPER / "landmarks_resnet101_r1m.yaml")
    assert {name: t.dataset.args.get("distractors_root") is not None for name, t in r1m.eval.targets.items()} == \
        {"roxford5k": False, "rparis6k": False, "roxford5k_r1m": True, "rparis6k_r1m": True}
    assert r1m.eval.targets["roxford5k_r1m"].dataset.name == "roxford5k"


def _random_features(n: int, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(seed)), dim=1)


def revisited_metric_names() -> set[str]:
    """The keys the revisited protocol returns, from a run on a two-query ground truth."""
    gnd = [{"bbx": np.array([0.0, 0.0, 4.0, 4.0]), "easy": np.array([0]), "hard": np.array([1]),
            "junk": np.array([2], dtype=np.int64)},
           {"bbx": np.array([0.0, 0.0, 4.0, 4.0]), "easy": np.array([3]), "hard": np.array([], dtype=np.int64),
            "junk": np.array([], dtype=np.int64)}]
    split = Split("test", labels=np.full(6, -1), paths=[f"{i}.jpg" for i in range(6)],
                  roles=np.array([QUERY] * 2 + [GALLERY] * 4), extra={"gnd": gnd, "num_distractors": 0})
    return set(PROTOCOLS.get("revisited")(_random_features(6), split))


def protocol_metric_names(cfg, target_name: str) -> set[str]:
    """The keys the target's protocol returns on its demo data (bundled, so it can run here)."""
    target = cfg.eval.targets[target_name]
    dataset = target.dataset or cfg.data.dataset
    split = load_splits(dataset.name, None, **dataset.args)[target.splits[0]]
    return set(PROTOCOLS.get(target.protocol.name)(_random_features(len(split)), split, **target.protocol.args))


def produced(cfg, names_of) -> set[str]:
    """Every metric key the config's evaluation gives (``<target>/<metric>`` with its several targets)."""
    assert all(len(t.splits) == 1 for t in cfg.eval.targets.values())
    return {f"{name}/{metric}" for name in cfg.eval.targets for metric in names_of(cfg, name)}


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda p: p.stem)
def test_table_columns_are_what_every_row_produces_at_paper_scale(path):
    table = load_table(path)
    revisited = revisited_metric_names()
    for row in table.rows:
        cfg = resolve_config(table, row, demo=False)
        assert cfg.data.dataset.name == "landmarks_clean"
        assert set(table.metrics) <= produced(cfg, lambda c, name: revisited), row.name


@pytest.mark.parametrize("path", TABLE_FILES, ids=lambda p: p.stem)
def test_demo_rows_resolve_small_and_map_every_column(path):
    table = load_table(path)
    mapping = table.demo_metrics
    assert set(mapping) == set(table.metrics), "every column needs its demo metric"
    paper_demo = paper_demo_overrides(table)
    for row in table.rows:
        cfg = resolve_config(table, row, demo=True, paper_demo=paper_demo)
        assert cfg.model.backbone.name == "small_cnn" and cfg.train.device == "cpu" and cfg.train.epochs <= 3
        datasets = [cfg.data.dataset, *(t.dataset for t in cfg.eval.targets.values())]
        assert {d.name for d in datasets} == {"synthetic"}, row.name
        assert cfg.train.multistage and cfg.train.multistage_chunk <= 16, "multistage runs at demo scale too"
        assert set(mapping.values()) <= produced(cfg, protocol_metric_names), row.name


def test_demo_exercises_multistage_chunking_and_the_rows_differ_as_at_paper_scale():
    """The paper-default demo batch is recomputed in several chunks, and each ablation's rows resolve to
    distinct configs at demo scale (a row that collapsed onto another would measure nothing)."""
    for path in TABLE_FILES:
        table = load_table(path)
        configs = [resolve_config(table, row, demo=True) for row in table.rows]
        distinct = {repr(cfg) for cfg in configs}
        collapsing = {"sota"}  # ResNet-50 and ResNet-101 rows both become the demo CNN
        assert len(distinct) == len(configs) or path.stem in collapsing, path.name
    batch = load_table(PAPER / "batch_size.yaml")
    sizes = [resolve_config(batch, row, demo=True).data.batch_size for row in batch.rows]
    chunk = resolve_config(batch, batch.rows[0], demo=True).train.multistage_chunk
    assert sizes == sorted(sizes) and max(sizes) > 2 * chunk


def load_dataset_fixtures():
    """tests/data/fixtures.py: writers of each dataset's official layout."""
    spec = importlib.util.spec_from_file_location("dataset_fixtures", REPO / "tests" / "data" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_paper_scale_row_runs_on_official_layouts_and_distractors_only_lower_map(tmp_path, monkeypatch):
    """sota_r1m.yaml's row at paper scale (revisited protocol, query crops, R1M through distractors_root, PCA
    whitening) on tiny files in the official layouts; only what cannot work here is shrunk: ImageNet weights
    (no download), image and descriptor sizes. Distractors can only push positives down the ranking, so every
    +R1M mAP is at most the same test set's mAP without them."""
    fixtures, data = load_dataset_fixtures(), tmp_path / "data"
    fixtures.write_landmarks_clean(data / "landmarks_clean")
    for name in ("roxford5k", "rparis6k"):
        fixtures.write_revisited(data / name, name)
    distractors = ["0/00/000001.jpg", "0/00/000002.jpg", "0/00/000003.jpg"]
    fixtures.write_lines(data / "revisitop1m" / "revisitop1m.txt", distractors)
    for seed, name in enumerate(distractors):
        fixtures.write_image(data / "revisitop1m" / "jpg" / name, seed=seed)
    monkeypatch.setenv("RETRIEVAL_DATA_ROOT", str(data))
    table = load_table(PAPER / "sota_r1m.yaml")
    (row,) = table.rows
    row.overrides = {**row.overrides, "model.backbone": {"name": "resnet18", "args": {"pretrained": None}},
                     "model.head.args.dim": 16, "model.whitening.args.dim": 2, "train.epochs": 1,
                     "train.device": "cpu", "data.train_transform": {"resize": 32, "crop": 32},
                     "eval.targets.roxford5k_r1m.dataset.args.distractors_root": str(data / "revisitop1m"),
                     "eval.targets.rparis6k_r1m.dataset.args.distractors_root": str(data / "revisitop1m")}
    TableRun(table, False, tmp_path / "results", tmp_path / "runs", echo=lambda _: None).run()
    (line,) = read_outcomes(tmp_path / "results" / "listwise_ap" / "sota_r1m", table.metrics).values()
    assert line.status == "done" and set(line.metrics) == set(table.metrics)
    for target in ("roxford5k", "rparis6k"):
        for level in ("medium", "hard"):
            assert line.metrics[f"{target}_r1m/{level}/map"] <= line.metrics[f"{target}/{level}/map"]


def test_bins_are_the_papers_centres_one_minus_m_times_two_over_m_minus_one():
    """Seed 000 (a review of the paper), "Quantization function": M bin centres b_m = 1 - (m-1) * 2/(M-1),
    m = 1..M. A score placed exactly on b_m must put its whole unit of weight on bin m under the config's
    score range and M."""
    from retrieval.losses.functional import soft_histograms

    args = load_config(PAPER / "landmarks_resnet101.yaml").losses["ranking"].args
    m = args["num_bins"]
    centres = torch.tensor([1 - (k - 1) * 2 / (m - 1) for k in range(1, m + 1)], dtype=torch.float64)
    # one query per centre, with that single score: its histogram must be the one-hot vector of its bin
    counts, positives = soft_histograms(centres.view(-1, 1), torch.ones(m, 1), m, *args["score_range"])
    assert torch.allclose(counts.double(), torch.eye(m, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(positives.double(), counts.double())
