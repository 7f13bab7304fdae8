"""The table runner: table files, results files, the completed-row cache, resuming, full scale on fixtures."""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from retrieval.data.bundled import synthetic
from retrieval.tables.cli import main
from retrieval.tables.describe import verdict
from retrieval.tables.drift import main as drift_main
from retrieval.tables.drift import table_drift
from retrieval.tables.provenance import code_commit, code_fingerprint, current_code
from retrieval.tables.results import DONE, Outcome, write_results
from retrieval.tables.runner import TableRun, slug
from retrieval.tables.spec import Claim, Relation, TableError, find_tables, load_table

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


def run_table(root: Path, table: Path, rows=None, demo=True, echo=lambda line: None, force=False):
    run = TableRun(load_table(table), demo, root / "results", root / "runs", echo=echo, force=force)
    return run.run(rows)


def run_dirs(root: Path, demo: bool = True) -> dict[str, Path]:
    return {p.name: p for p in (root / "runs" / ("demo" if demo else "") / PAPER / "t").iterdir()}


def mtimes(folder: Path) -> dict[str, int]:
    """Modification times of a run's files; its ``.lock`` is rewritten by every process that opens the run."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.name != ".lock"}


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
def test_demo_results_hold_ours_and_say_what_was_measured_with_published_numbers_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = toy_paper(tmp_path)
    report = run_table(tmp_path, table)
    assert report.computed == ["First row", "Second (seed 1)"] and not report.failed
    lines = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    assert [line["row"] for line in lines] == ["First row", "Second (seed 1)"]
    assert not any(column.startswith("diff ") for column in lines[0])  # never ours - published at demo scale
    dirs = run_dirs(tmp_path)
    code, commit = current_code()
    for line in lines:
        (run_dir,) = [d for name, d in dirs.items() if name.startswith(slug(line["row"]) + "-")]
        assert run_dir.name.endswith(f"{line['config_hash']}-{code}")
        metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
        for metric in ("recall@1", "map"):
            assert float(line[metric]) == pytest.approx(100 * metrics[metric], abs=0.005)
            assert len(line[metric].split(".")[1]) == 2
        assert line["status"] == "done" and line["code"] == code and line["commit"] == commit
        assert line["command"] == f'python -m retrieval table experiments/toy/t.yaml --demo --rows "{line["row"]}"'
        # what the row measured, counted independently on the bundled data the demo config names
        labels = synthetic(num_classes=8, images_per_class=8, image_size=12)["test"].labels
        assert f"test: synthetic test, {len(set(labels.tolist()))} classes, {len(labels)} images" in line["measured"]
    first, second = lines
    assert first["published recall@1"] == "61.3" and first["published map"] == "7.0"
    assert first["source"] == "Toy paper, Table 1 (written by the test)"
    assert all(second[key] == "" for key in ("published recall@1", "published map", "source"))
    md = (tmp_path / "results" / "demo" / PAPER / "t.md").read_text()
    assert md.startswith("# Toy table (demo scale)\n\n**Demo scale: these numbers are NOT comparable")
    assert "**The table at paper scale** (what the rows stand for" in md and "Two rows of the toy paper." in md
    assert "`recall@1` = Recall@1; `map` = mAP (each eval target's data: see `measured`)." in md
    main_table, reference = md.split("## Published numbers, for reference only")
    header = next(line for line in main_table.splitlines() if line.startswith("| row |"))
    assert "published" not in header and "diff" not in header and "| measured |" in header
    assert "| First row | 61.3 | 7.0 | Toy paper, Table 1 (written by the test) |" in reference
    assert "Second (seed 1)" not in reference  # a row with no published number is not listed there


def test_paper_scale_results_hold_the_difference_with_the_published_numbers(tmp_path):
    table = load_table(toy_paper(tmp_path))
    outcomes = {"First row": Outcome(DONE, "h1", {"recall@1": 70.0, "map": 5.25}, "c", code="f"),
                "Second (seed 1)": Outcome(DONE, "h2", {"recall@1": 50.0, "map": 4.0}, "c", code="f")}
    stem = tmp_path / "results" / PAPER / "t"
    write_results(stem, table, outcomes, demo=False, measured={"First row": "train: x"})
    first, second = read_csv(Path(f"{stem}.csv"))
    assert (first["diff recall@1"], first["diff map"], first["measured"]) == ("8.70", "-1.75", "train: x")
    assert second["diff recall@1"] == "" and second["published recall@1"] == ""
    md = Path(f"{stem}.md").read_text()
    assert md.startswith("# Toy table\n\nTwo rows of the toy paper.") and "NOT comparable" not in md
    assert "for reference only" not in md


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

    # a fresh clone has the results files but no run directories: at demo scale every row is trained again
    shutil.rmtree(tmp_path / "runs")
    fresh = run_table(tmp_path, table)
    assert fresh.computed == ["First row", "Second (seed 1)"] and fresh.kept == []
    assert [{m: line[m] for m in ("recall@1", "map")} for line in read_csv(csv_path)] == \
        [{m: line[m] for m in ("recall@1", "map")} for line in first_lines]

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


def test_at_paper_scale_the_cache_is_the_results_file_without_run_directories(tmp_path):
    table = toy_paper(tmp_path, rows=cheap_rows())
    run_table(tmp_path, table, demo=False)
    shutil.rmtree(tmp_path / "runs")
    again = run_table(tmp_path, table, demo=False)
    assert again.computed == [] and again.kept == ["First row", "Second (seed 1)"]
    assert not (tmp_path / "runs").exists()


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
    assert line["status"] == "done" and "run first-row-" in line["note"] and "of table toy/t," in line["note"]
    assert "runs/" not in line["note"]  # runs/ is not in the repository: the note names the run, not a path


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
    md = (tmp_path / "results" / "demo" / PAPER / "t.md").read_text()
    assert "`paper/map` = MAP@R (each eval target" in md
    assert "| row | recall@1 | MAP@R (stands for paper/map) | measured |" in md  # not headed by what it is not


# --------------------------------------------------------------------------- code provenance and --force
OTHER_CODE = "0123456789ab"


def edit_csv(path: Path, changes: dict[str, str]) -> None:
    """Set ``changes`` on every line of the results CSV at ``path`` (as an older checkout would have left it)."""
    lines = read_csv(path)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows({**line, **changes} for line in lines)


def test_a_line_made_by_other_code_is_recomputed_at_demo_scale_in_a_directory_of_its_own(tmp_path):
    table = toy_paper(tmp_path)
    run_table(tmp_path, table)
    csv_path = tmp_path / "results" / "demo" / PAPER / "t.csv"
    fresh = read_csv(csv_path)
    code, _ = current_code()
    # what a clone of older code leaves: lines and finished run directories of another fingerprint
    edit_csv(csv_path, {"code": OTHER_CODE, "commit": "feedbeef", "recall@1": "1.00"})
    for name, folder in run_dirs(tmp_path).items():
        folder.rename(folder.with_name(name.replace(code, OTHER_CODE)))
    old_dirs = {name: mtimes(d) for name, d in run_dirs(tmp_path).items()}
    echoed = []
    report = run_table(tmp_path, table, echo=echoed.append)
    assert report.computed == ["First row", "Second (seed 1)"] and report.kept == []
    assert sum(f"made by other code ({OTHER_CODE})" in line for line in echoed) == 2
    lines = read_csv(csv_path)
    assert [line["code"] for line in lines] == [code, code]
    assert [line["recall@1"] for line in lines] == [line["recall@1"] for line in fresh]  # trained again, same result
    after = run_dirs(tmp_path)
    assert {name: mtimes(after[name]) for name in old_dirs} == old_dirs  # the other code's runs were not touched
    assert sum(name.endswith(code) for name in after) == 2

    echoed.clear()
    again = run_table(tmp_path, table, echo=echoed.append)
    assert again.kept == ["First row", "Second (seed 1)"]
    assert f"made by this code {code} at commit {lines[0]['commit']}" in echoed[0]


def cheap_rows() -> list[dict]:
    """The toy rows with the demo settings as plain overrides: paper scale at the cost of the demo."""
    return [{"name": "First row", "config": "base.yaml", "published": "first", "overrides": DEMO},
            {"name": "Second (seed 1)", "config": "base.yaml", "overrides": {**DEMO, "seed": 1}}]


def test_at_paper_scale_a_line_made_by_other_code_is_stale_until_named_or_forced(tmp_path):
    table = toy_paper(tmp_path, rows=cheap_rows())
    run_table(tmp_path, table, demo=False)
    csv_path = tmp_path / "results" / PAPER / "t.csv"
    done = read_csv(csv_path)
    edit_csv(csv_path, {"code": OTHER_CODE})
    code, _ = current_code()
    for name, folder in run_dirs(tmp_path, demo=False).items():
        folder.rename(folder.with_name(name.replace(code, OTHER_CODE)))
    report = run_table(tmp_path, table, demo=False)
    assert report.computed == [] and report.kept == []  # days of training are not redone silently...
    lines = read_csv(csv_path)
    assert [line["status"] for line in lines] == ["stale", "stale"]  # ...nor passed off as current
    assert f"made by other code ({OTHER_CODE}" in lines[0]["note"] and "--force" in lines[0]["note"]
    assert [line["recall@1"] for line in lines] == [line["recall@1"] for line in done]
    assert run_table(tmp_path, table, rows=["First row"], demo=False).computed == ["First row"]
    assert [line["status"] for line in read_csv(csv_path)] == ["done", "stale"]
    assert run_table(tmp_path, table, demo=False, force=True).computed == ["First row", "Second (seed 1)"]
    assert [line["status"] for line in read_csv(csv_path)] == ["done", "done"]


def test_force_trains_current_rows_again_and_shares_only_runs_of_the_same_invocation(tmp_path, capsys):
    rows = [*rows_spec(), {**rows_spec()[0], "name": "Same config as the first"}]
    table = toy_paper(tmp_path, rows=rows)
    first = run_table(tmp_path, table)
    assert first.computed == ["First row", "Second (seed 1)"] and first.kept == ["Same config as the first"]
    before = {name: mtimes(d) for name, d in run_dirs(tmp_path).items()}
    assert len(before) == 2

    forced = run_table(tmp_path, table, force=True)
    assert forced.computed == ["First row", "Second (seed 1)"] and forced.kept == ["Same config as the first"]
    after = {name: mtimes(d) for name, d in run_dirs(tmp_path).items()}
    assert set(after) == set(before) and all(after[name] != before[name] for name in before)

    # the command line: --force with --rows recomputes only the named row
    main([str(table), "--demo", "--force", "--rows", "Second (seed 1)", "--results", str(tmp_path / "results"),
          "--runs", str(tmp_path / "runs")])
    assert "1 table(s)" in capsys.readouterr().out
    last = {name: mtimes(d) for name, d in run_dirs(tmp_path).items()}
    (second,) = [name for name in last if name.startswith("second-seed-1-")]
    (first_dir,) = [name for name in last if name.startswith("first-row-")]
    assert last[first_dir] == after[first_dir] and last[second] != after[second]


def test_code_fingerprint_follows_the_package_sources_but_not_the_table_layer(tmp_path):
    package = tmp_path / "package"
    (package / "tables").mkdir(parents=True)
    (package / "losses.py").write_text("SCALE = 1\n")
    (package / "tables" / "results.py").write_text("TITLE = 'a'\n")
    base = code_fingerprint(package)
    assert len(base) == 12 and code_fingerprint(package) == base
    (package / "tables" / "results.py").write_text("TITLE = 'b'\n")
    assert code_fingerprint(package) == base
    (package / "losses.py").write_text("SCALE = 2\n")
    changed = code_fingerprint(package)
    assert changed != base
    (package / "extra.py").write_text("")
    assert code_fingerprint(package) != changed


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.email=t@example.org", "-c", "user.name=t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def test_code_commit_is_clean_while_only_results_change(tmp_path):
    for name, text in (("retrieval/core.py", "A = 1\n"), ("experiments/p/t.yaml", "rows: []\n"),
                       ("results/demo/p/t.csv", "row\n")):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert code_commit(tmp_path) == ""  # not a git checkout: no commit to claim
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "x")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert code_commit(tmp_path) == head
    (tmp_path / "results" / "demo" / "p" / "t.csv").write_text("row\nnew\n")  # a run rewrites its results
    assert code_commit(tmp_path) == head
    (tmp_path / "experiments" / "p" / "t.yaml").write_text("rows: [1]\n")
    assert code_commit(tmp_path) == head + "+uncommitted"
    git(tmp_path, "checkout", "--", "experiments")
    (tmp_path / "retrieval" / "new.py").write_text("")  # new, not yet added: still other code
    assert code_commit(tmp_path) == head + "+uncommitted"


# --------------------------------------------------------------------------- drift from the committed results
def write_csv(path: Path, lines: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lines[0]))
        writer.writeheader()
        writer.writerows(lines)


def results_lines(values: dict[str, tuple[str, str]]) -> list[dict]:
    """Results lines ``row -> (recall@1, published recall@1)``, status done."""
    return [{"row": row, "recall@1": ours, "published recall@1": published, "config_hash": "h", "code": "c",
             "status": "done"} for row, (ours, published) in values.items()]


def test_drift_report_compares_fresh_numbers_with_the_committed_ones_row_by_row(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "results" / "demo" / PAPER / "t.csv"
    write_csv(path, results_lines({"a": ("50.00", "61.3"), "b": ("50.00", ""), "gone": ("10.00", "")}))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "committed results")
    fresh = results_lines({"a": ("50.90", "99.9"), "b": ("47.00", ""), "new": ("1.00", "")})
    write_csv(path, fresh)
    assert drift_main(["--results", "results/demo", "--tolerance", "1"]) == 0
    text = (tmp_path / "results" / "demo" / "drift.md").read_text()
    assert text == capsys.readouterr().out.split("\nwritten to ")[0]
    assert "Tolerance: 1 percentage points per metric. 2 row(s) compared, 1 beyond the tolerance" in text
    assert "- BEYOND TOLERANCE: results/demo/toy/t.csv: 'b': recall@1 -3.00" in text
    assert "BEYOND TOLERANCE: results/demo/toy/t.csv: 'a'" not in text
    assert "| results/demo/toy/t.csv | a | 0.90 | recall@1 +0.90 |  |" in text  # published columns not compared
    assert "| new |  |  | new row (not in the committed file at HEAD) |" in text
    assert "| gone |  |  | committed row no longer in the table |" in text
    # a CSV of another kind (a benchmark) is not a table's results
    (tmp_path / "results" / "demo" / "benchmarks").mkdir()
    (tmp_path / "results" / "demo" / "benchmarks" / "knn.csv").write_text("n,seconds\n1,2\n")
    assert drift_main(["--results", "results/demo"]) == 0
    assert "knn" not in (tmp_path / "results" / "demo" / "drift.md").read_text()
    # a results file git has never seen is reported, not compared
    write_csv(tmp_path / "results" / "demo" / "other" / "u.csv", results_lines({"x": ("1.00", "")}))
    assert [d.note for d in table_drift(tmp_path / "results" / "demo" / "other" / "u.csv")] == \
        ["no committed version at HEAD"]


# --------------------------------------------------------------------------- claims
CLAIM = {"table": "t", "rows": ["First row", "Second (seed 1)"], "claim": "The first row beats the second.",
         "source": "seed 000_test.txt, section 1",
         "relation": {"kind": "gain", "metric": ["recall@1", "map"], "row": "First row", "over": ["Second (seed 1)"],
                      "stated": 1.5}}
BAD_CLAIMS = [
    ({"rows": ["Frist row"]}, "names row 'Frist row', which table", "Did you mean 'First row'?"),
    ({"relation": {**CLAIM["relation"], "metric": "recall@2"}}, "'recall@2' is not a column", ""),
    ({"relation": {**CLAIM["relation"], "kind": "better"}}, "relation kind 'better' is not one of", ""),
    ({"relation": {**CLAIM["relation"], "kind": "value"}}, "a 'value' relation takes no 'over' rows", ""),
    ({"relation": {"kind": "gain", "metric": "map", "row": "First row"}}, "needs the rows it is compared with", ""),
    ({"relation": {**CLAIM["relation"], "stated": "1.5"}}, "stated must be a number", ""),
    ({"source": None}, "source must be a non-empty string", ""),
    ({"claim": ""}, "claim must be a non-empty string", ""),
]


@pytest.mark.parametrize("change, message, hint", BAD_CLAIMS)
def test_a_bad_claim_names_the_published_file_and_what_to_fix(tmp_path, change, message, hint):
    table = toy_paper(tmp_path)
    published = table.parent / "published.yaml"
    write_yaml(published, {**PUBLISHED, "claims": [{**CLAIM, **change}]})
    with pytest.raises(TableError) as error:
        load_table(table)
    assert str(published) in str(error.value) and message in str(error.value) and hint in str(error.value)


def test_claims_of_other_tables_are_not_this_tables(tmp_path):
    table = toy_paper(tmp_path)
    write_yaml(table.parent / "published.yaml", {**PUBLISHED, "claims": [CLAIM, {**CLAIM, "table": "u"}]})
    (claim,) = load_table(table).claims
    assert claim.rows == ("First row", "Second (seed 1)") and claim.relation.metrics == ("recall@1", "map")


def test_claim_relations_are_evaluated_on_our_rows():
    gain = Claim("t", ("A", "B", "C"), "A beats B and C", "seed", Relation("gain", ("m1", "m2"), "A", ("B", "C"), 1.5))
    numbers = {"A\0m1": 60.0, "A\0m2": 70.0, "B\0m1": 62.0, "B\0m2": 66.0, "C\0m1": 50.0, "C\0m2": 50.0}
    # by hand: A's mean 65, B's 64, C's 50: A - max(B, C) = 1
    assert verdict(gain, numbers, demo=True) == 'demo: "A" - best of ["B", "C"] = +1.00 mean of m1, m2; stated +1.5'
    assert verdict(gain, numbers, demo=False).startswith('holds: "A" - best of ["B", "C"] = +1.00')
    worse = verdict(gain, {**numbers, "B\0m1": 64.5}, demo=False)
    assert worse.startswith('does not hold: "A" - best of ["B", "C"] = -0.25')
    assert verdict(gain, {k: v for k, v in numbers.items() if k != "C\0m2"}, demo=False) == \
        "not evaluated yet: a row it names has no number"
    flat = Claim("t", ("A", "B"), "no gain", "seed", Relation("no_gain", ("m1",), "A", ("B",), within=1.0))
    assert verdict(flat, {"A\0m1": 63.0, "B\0m1": 62.0}, demo=False).startswith('holds: "A" - best of ["B"] = +1.00')
    assert verdict(flat, {"A\0m1": 63.01, "B\0m1": 62.0}, demo=False).startswith("does not hold")
    value = Claim("t", ("A",), "A reaches 66.6", "seed", Relation("value", ("m1",), "A", stated=66.6))
    assert verdict(value, numbers, demo=False) == 'ours: "A": 60.00 m1, stated 66.6'
    assert verdict(Claim("t", ("A",), "text only", "seed"), numbers, demo=False) == ""


def test_demo_results_list_the_claims_with_our_demo_value(tmp_path):
    table = toy_paper(tmp_path)
    write_yaml(table.parent / "published.yaml", {**PUBLISHED, "claims": [CLAIM]})
    run_table(tmp_path, table)
    first, second = read_csv(tmp_path / "results" / "demo" / PAPER / "t.csv")
    mean = lambda line: (float(line["recall@1"]) + float(line["map"])) / 2  # noqa: E731
    md = (tmp_path / "results" / "demo" / PAPER / "t.md").read_text()
    claims = md.split("## Claims")[1]
    assert 'The first row beats the second. (seed 000_test.txt, section 1; rows: "First row", "Second (seed 1)")' \
        in claims
    assert f'**demo: "First row" - best of ["Second (seed 1)"] = {mean(first) - mean(second):+.2f} mean of recall@1, ' \
           "map; stated +1.5**" in claims
    assert "**holds" not in claims and "**does not hold" not in claims  # a demo number neither confirms nor refutes


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
