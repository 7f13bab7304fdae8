"""The table runner: table files, results files, the completed-row cache, resuming, full scale on fixtures."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from retrieval.tables.cli import main
from retrieval.tables.runner import TableRun, slug
from retrieval.tables.spec import TableError, find_tables, load_table

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "experiments" / "demo" / "quickstart.yaml"
PAPER = "toy"
# demo scale for the tests: 32 training and 32 test images of 12 px, a fraction of a second per row
DEMO = {
    "data.dataset": {"name": "synthetic", "args": {"num_classes": 8, "images_per_class": 8, "image_size": 12}},
    "data.batch_size": 16, "data.samples_per_class": 4, "data.batches_per_epoch": 2,
    "data.train_transform": {"resize": None, "crop": 10, "random_crop": True},
    "data.test_transform": {"resize": None, "crop": 10},
    "model.backbone.args.width": 8, "model.head.args.dim": 16,
    "train.epochs": 1, "train.schedule": {"name": "constant"}, "train.device": "cpu",
    "eval.every": 1, "eval.batch_size": 512,
}
PUBLISHED = {
    "sources": {"A": "Toy paper, Table 1 (written by the test)"},
    "entries": {"first": {"source": "A", "values": {"recall@1": 61.3, "map": 7}}},
}


def write_yaml(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rows_spec(epochs: dict[str, int] | None = None) -> list[dict]:
    epochs = epochs or {}
    return [
        {"name": "First row", "config": "base.yaml", "published": "first",
         "demo_overrides": {"train.epochs": epochs.get("First row", 1)}},
        {"name": "Second (seed 1)", "config": "base.yaml", "overrides": {"seed": 1},
         "demo_overrides": {"train.epochs": epochs.get("Second (seed 1)", 1)}},
    ]


def toy_paper(root: Path, rows=None, **table) -> Path:
    """``root/experiments/toy/`` with a base config, demo.yaml, published.yaml and table ``t.yaml``."""
    folder = root / "experiments" / PAPER
    write_yaml(folder / "base.yaml", {"_base_": [str(QUICKSTART)]})
    write_yaml(folder / "demo.yaml", DEMO)
    write_yaml(folder / "published.yaml", PUBLISHED)
    spec = {"title": "Toy table", "paper": PAPER, "description": "Two rows of the toy paper.",
            "metrics": ["recall@1", "map"], "published": "published.yaml",
            "rows": rows_spec() if rows is None else rows, **table}
    return write_yaml(folder / "t.yaml", spec)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_table(root: Path, table: Path, rows=None, demo=True, echo=lambda line: None):
    run = TableRun(load_table(table), demo, root / "results", root / "runs", echo=echo)
    return run.run(rows)


def run_dirs(root: Path) -> dict[str, Path]:
    return {p.name: p for p in (root / "runs" / "demo" / PAPER / "t").iterdir()}


def mtimes(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- table files
BAD_TABLES = [
    ({"rowz": []}, "'rowz' is not a key of table file", "Did you mean 'rows'?"),
    ({"rows": [{"name": "a", "config": "base.yaml", "overide": {}}]}, "'overide' is not a key of row 1 ('a')",
     "Did you mean 'overrides'?"),
    ({"rows": [{"config": "base.yaml"}]}, "row 1 needs the key 'name'", ""),
    ({"rows": [{"name": "a", "config": "nope.yaml"}]}, "config 'nope.yaml' not found", "relative to the table"),
    ({"rows": [{"name": "a", "config": "base.yaml", "published": "frist"}]}, "no entry 'frist'",
     "Did you mean 'first'?"),
    ({"rows": [{"name": "a", "config": "base.yaml"}, {"name": "a", "config": "base.yaml"}]}, "unique", "['a']"),
    ({"rows": []}, "rows must be a non-empty list", ""),
    ({"metrics": "recall@1"}, "metrics must be a non-empty list", ""),
    ({"metrics": ["map", "map"]}, "listed twice", ""),
    ({"demo": {"overides": {}}}, "'overides' is not a key of demo", ""),
    ({"rows": [{"name": "a", "config": "base.yaml", "overrides": 3}]}, "rows.0.overrides must be a mapping",
     "dotted keys"),
    ({"demo": {"metrics": {"recall@2": "map"}}}, "'recall@2' is not one of the table's metrics", "recall@1"),
]


@pytest.mark.parametrize("change, message, hint", BAD_TABLES)
def test_bad_table_file_names_file_key_and_fix(tmp_path, change, message, hint):
    table = toy_paper(tmp_path, **change)
    with pytest.raises(TableError) as error:
        load_table(table)
    text = str(error.value)
    assert str(table) in text and message in text and hint in text


def test_published_file_errors(tmp_path):
    table = toy_paper(tmp_path)
    published = table.parent / "published.yaml"
    for entries, message in (({"first": {"source": "B", "values": {"map": 1}}}, "source 'B' is not under sources"),
                             ({"first": {"source": "A", "values": {"map": "n/a"}}}, "is not a number"),
                             ({"first": {"source": "A", "value": {"map": 1}}}, "'value' is not a key")):
        write_yaml(published, {**PUBLISHED, "entries": entries})
        with pytest.raises(TableError, match=message) as error:
            load_table(table)
        assert str(published) in str(error.value)
    write_yaml(published, PUBLISHED)
    write_yaml(table, {**yaml.safe_load(table.read_text()), "published": None})
    with pytest.raises(TableError, match="the table has no 'published:' file"):
        load_table(table)


def test_row_config_errors_name_table_and_row_before_anything_trains(tmp_path):
    rows = rows_spec()
    rows[1]["overrides"] = {"data.batch_size": 0}
    table = toy_paper(tmp_path, rows=rows)
    with pytest.raises(TableError) as error:
        run_table(tmp_path, table)
    assert str(table) in str(error.value) and "'Second (seed 1)'" in str(error.value)
    assert "batch_size" in str(error.value)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


def test_demo_needs_the_papers_demo_yaml(tmp_path):
    table = toy_paper(tmp_path)
    (table.parent / "demo.yaml").unlink()
    with pytest.raises(TableError, match="--demo needs the paper's demo-scale overrides"):
        run_table(tmp_path, table)


def test_list_finds_table_files_by_content(tmp_path, capsys, monkeypatch):
    table = toy_paper(tmp_path)
    write_yaml(tmp_path / "experiments" / "other" / "rows_in_name_only.yaml", {"seed": 1})
    assert find_tables(tmp_path / "experiments") == [table]
    monkeypatch.chdir(tmp_path)
    main(["--list"])
    assert capsys.readouterr().out.split() == ["experiments/toy/t.yaml"]


def test_slug_is_file_name_safe():
    assert slug("Smooth-AP (BS 224)") == "smooth-ap-bs-224"
    assert slug("CUB-200-2011, MG, ranking + classification") == "cub-200-2011-mg-ranking-classification"


def test_unknown_row_name_is_an_error(tmp_path):
    table = toy_paper(tmp_path)
    with pytest.raises(TableError, match=r"no row named \['Third'\]"):
        run_table(tmp_path, table, rows=["Third"])


# --------------------------------------------------------------------------- results and cache
def test_results_files_hold_ours_published_and_difference(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = toy_paper(tmp_path)
    report = run_table(tmp_path, table)
    assert report.computed == ["First row", "Second (seed 1)"] and not report.failed
    lines = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    assert [line["row"] for line in lines] == ["First row", "Second (seed 1)"]
    dirs = run_dirs(tmp_path)
    for line in lines:
        (run_dir,) = [d for name, d in dirs.items() if name.startswith(slug(line["row"]) + "-")]
        assert run_dir.name.endswith(line["config_hash"])
        metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        for metric in ("recall@1", "map"):
            assert float(line[metric]) == pytest.approx(100 * metrics[metric], abs=0.005)
            assert len(line[metric].split(".")[1]) == 2
        assert line["status"] == "done" and line["commit"] != ""
        assert line["command"] == f'python -m retrieval table experiments/toy/t.yaml --demo --rows "{line["row"]}"'
    first, second = lines
    assert first["published recall@1"] == "61.3" and first["published map"] == "7.0"
    assert float(first["diff recall@1"]) == pytest.approx(round(float(first["recall@1"]) - 61.3, 2), abs=1e-9)
    assert float(first["diff map"]) == pytest.approx(round(float(first["map"]) - 7.0, 2), abs=1e-9)
    assert first["source"] == "Toy paper, Table 1 (written by the test)"
    # a row with no published entry keeps every published, diff and source cell empty
    assert all(second[key] == "" for key in ("published recall@1", "published map", "diff recall@1", "diff map",
                                             "source"))
    md = (tmp_path / "results" / "demo" / PAPER / "t.md").read_text()
    assert md.startswith("# Toy table\n\nTwo rows of the toy paper.\n\n")
    assert "**Demo scale: these numbers are NOT comparable to the paper.**" in md
    second_md = next(line for line in md.splitlines() if line.startswith("| Second (seed 1) |"))
    assert "|  |  |  |  |  |" in second_md  # its published and diff cells are empty, not zero


def test_completed_rows_are_kept_by_config_hash(tmp_path):
    table = toy_paper(tmp_path)
    run_table(tmp_path, table)
    before = {name: mtimes(d) for name, d in run_dirs(tmp_path).items()}
    csv_path = tmp_path / "results" / "demo" / PAPER / "t.csv"
    first_lines = read_csv(csv_path)

    again = run_table(tmp_path, table)
    assert again.computed == [] and again.kept == ["First row", "Second (seed 1)"]
    assert {name: mtimes(d) for name, d in run_dirs(tmp_path).items()} == before
    assert read_csv(csv_path) == first_lines

    # the cache is the results file: it holds without the run directories too
    for d in run_dirs(tmp_path).values():
        for path in sorted(d.rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        d.rmdir()
    assert run_table(tmp_path, table).computed == []
    assert not any((tmp_path / "runs" / "demo" / PAPER / "t").iterdir())

    # a changed override changes the hash: only that row is recomputed
    rows = rows_spec()
    rows[1]["overrides"] = {"seed": 2}
    write_yaml(table, {**yaml.safe_load(table.read_text()), "rows": rows})
    changed = run_table(tmp_path, table)
    assert changed.computed == ["Second (seed 1)"] and changed.kept == ["First row"]
    lines = read_csv(csv_path)
    assert lines[0] == first_lines[0]
    assert lines[1]["config_hash"] != first_lines[1]["config_hash"]
    assert [line["row"] for line in lines] == ["First row", "Second (seed 1)"]


def test_a_config_that_already_ran_for_another_table_is_not_trained_again(tmp_path):
    table = toy_paper(tmp_path)
    run_table(tmp_path, table)
    other = write_yaml(table.parent / "u.yaml", {**yaml.safe_load(table.read_text()), "title": "Another table",
                                                 "rows": [{**rows_spec()[0], "name": "Baseline"}]})
    report = run_table(tmp_path, other)
    assert report.computed == [] and report.kept == ["Baseline"]
    assert not (tmp_path / "runs" / "demo" / PAPER / "u").exists()
    (line,) = read_csv(tmp_path / "results" / "demo" / PAPER / "u.csv")
    first = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")[0]
    assert {k: line[k] for k in ("recall@1", "map", "config_hash")} == \
        {k: first[k] for k in ("recall@1", "map", "config_hash")}
    assert line["status"] == "done" and "first-row-" in line["note"]


def test_rows_subset_keeps_the_other_lines(tmp_path):
    table = toy_paper(tmp_path)
    report = run_table(tmp_path, table, rows=["Second (seed 1)"])
    assert report.computed == ["Second (seed 1)"]
    lines = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    assert [(line["row"], line["status"]) for line in lines] == [("First row", "not run"), ("Second (seed 1)", "done")]
    assert lines[0]["published recall@1"] == "61.3" and lines[0]["recall@1"] == ""

    # changing the config of a row that is not selected marks its old line stale instead of passing it off
    rows = rows_spec()
    rows[1]["overrides"] = {"seed": 3}
    write_yaml(table, {**yaml.safe_load(table.read_text()), "rows": rows})
    run_table(tmp_path, table, rows=["First row"])
    lines = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    assert [line["status"] for line in lines] == ["done", "stale"]
    assert lines[1]["recall@1"] != "" and "config changed" in lines[1]["note"]
    done_line = lines[1]

    # back to the config it ran with, the line is current again without recomputing
    write_yaml(table, {**yaml.safe_load(table.read_text()), "rows": rows_spec()})
    again = run_table(tmp_path, table)
    assert again.computed == [] and again.kept == ["First row", "Second (seed 1)"]
    second = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")[1]
    assert second["status"] == "done" and second["note"] == ""
    assert {k: second[k] for k in ("recall@1", "map", "config_hash")} == \
        {k: done_line[k] for k in ("recall@1", "map", "config_hash")}


def test_a_metric_the_run_does_not_produce_fails_the_row_not_the_table(tmp_path):
    table = toy_paper(tmp_path, metrics=["recall@1", "recall@1000"])
    report = run_table(tmp_path, table)
    assert report.failed == ["First row", "Second (seed 1)"]
    line = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")[0]
    assert line["status"] == "failed" and "recall@1000" in line["note"] and line["recall@1"] == ""


def test_demo_metrics_read_a_column_from_another_metric_and_say_so(tmp_path):
    table = toy_paper(tmp_path, rows=rows_spec()[:1], metrics=["recall@1", "paper/map"],
                      demo={"metrics": {"paper/map": "map@r"}})
    run_table(tmp_path, table)
    (line,) = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    (run_dir,) = run_dirs(tmp_path).values()
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert float(line["paper/map"]) == pytest.approx(100 * metrics["map@r"], abs=0.005)
    assert "`paper/map` shows the demo run's `map@r`" in (tmp_path / "results" / "demo" / PAPER / "t.md").read_text()


# --------------------------------------------------------------------------- killing and resuming
def cli_command(table: Path, root: Path) -> list[str]:
    return [sys.executable, "-m", "retrieval.tables", str(table), "--demo", "--results", str(root / "results"),
            "--runs", str(root / "runs")]


@pytest.mark.slow
def test_killed_table_run_resumes_without_recomputing_finished_rows(tmp_path):
    table = toy_paper(tmp_path, rows=rows_spec({"First row": 1, "Second (seed 1)": 12}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    csv_path = tmp_path / "results" / "demo" / PAPER / "t.csv"
    runs = tmp_path / "runs" / "demo" / PAPER / "t"
    process = subprocess.Popen(cli_command(table, tmp_path), env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            first_done = csv_path.is_file() and read_csv(csv_path)[0]["status"] == "done"
            second_started = any(runs.glob("second-seed-1-*/checkpoints/*.sha256"))
            if first_done and second_started:
                break
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.02)
        else:
            pytest.fail("the first row did not finish in 120 s")
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        process.kill()
    lines = read_csv(csv_path)
    assert [line["status"] for line in lines] == ["done", "not run"]
    (first_dir,) = runs.glob("first-row-*")
    first_files = mtimes(first_dir)

    resumed = subprocess.run(cli_command(table, tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "'First row' kept from" in resumed.stdout
    assert "resuming" in resumed.stderr  # the interrupted row continued from its checkpoint
    assert mtimes(first_dir) == first_files  # the finished row was not touched
    lines = read_csv(csv_path)
    assert [(line["row"], line["status"]) for line in lines] == [("First row", "done"), ("Second (seed 1)", "done")]
    (second_dir,) = runs.glob("second-seed-1-*")
    epochs = [int(row["epoch"]) for row in read_csv(second_dir / "log.csv")]
    assert epochs == list(range(13))  # each epoch trained once, none repeated after the resume


# --------------------------------------------------------------------------- paper scale on dataset fixtures
def load_fixtures():
    spec = importlib.util.spec_from_file_location("dataset_fixtures", REPO / "tests" / "data" / "fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_full_scale_table_on_dataset_fixtures(tmp_path, capsys, monkeypatch):
    load_fixtures().write_cub200(tmp_path / "data" / "cub200", classes=(1, 2, 3, 101, 102), per_class=4)
    folder = tmp_path / "experiments" / PAPER
    write_yaml(folder / "cub.yaml", {
        "_base_": [str(QUICKSTART)],
        "data": {"dataset": {"name": "cub200"}, "batch_size": 4, "samples_per_class": 2,
                 "train_transform": {"resize": 16, "crop": 16}, "test_transform": {"resize": 16, "crop": 16}},
        "model": {"backbone": {"name": "small_cnn", "args": {"width": 8}}, "head": {"args": {"dim": 8}}},
        "train": {"epochs": 1, "schedule": {"name": "constant"}, "device": "cpu"},
        "eval": {"every": 1, "targets": {"test": {"protocol": {"name": "leave_one_out", "args": {"ks": [1]}}}}},
    })
    write_yaml(folder / "t.yaml", {
        "title": "Toy full scale", "paper": PAPER, "metrics": ["recall@1"],
        "rows": [{"name": "CUB", "config": "cub.yaml"},
                 {"name": "SOP", "config": "cub.yaml", "overrides": {
                     "data.dataset": {"name": "sop"},
                     "eval.targets.inshop": {"dataset": {"name": "inshop"}, "splits": ["test"]}}}]})
    monkeypatch.setenv("RETRIEVAL_DATA_ROOT", str(tmp_path / "elsewhere"))  # --data-root wins; restored after
    main([str(folder / "t.yaml"), "--data-root", str(tmp_path / "data"), "--results", str(tmp_path / "results"),
          "--runs", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert "skipped dataset 'sop'" in out and "python data_prep/sop.py --root DIR" in out
    assert "skipped dataset 'inshop'" in out and "python data_prep/inshop.py --root DIR" in out
    cub, sop = read_csv(tmp_path / "results" / PAPER / "t.csv")
    (run_dir,) = (tmp_path / "runs" / PAPER / "t").glob("cub-*")
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    assert cub["status"] == "done" and float(cub["recall@1"]) == pytest.approx(100 * metrics["recall@1"], abs=0.005)
    assert cub["command"].endswith('t.yaml --rows "CUB"') and "--demo" not in cub["command"]
    assert sop["status"] == "skipped" and sop["recall@1"] == ""
    assert "dataset 'sop' is not prepared" in sop["note"] and "dataset 'inshop' is not prepared" in sop["note"]
    md = (tmp_path / "results" / PAPER / "t.md").read_text()
    assert "NOT comparable" not in md
