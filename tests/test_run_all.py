"""run_all.sh: every table at demo scale in one process, recomputing rows made by other code, a drift report
against the committed results, then the notebooks, going on past a broken table."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from test_tables import git, read_csv, toy_paper, write_csv, write_yaml

REPO = Path(__file__).resolve().parents[1]


def run_all(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(root / "run_all.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_bad_arguments_print_the_usage(tmp_path):
    shutil.copy(REPO / "run_all.sh", tmp_path)
    for args, message in ((["--fast"], "unknown argument --fast"), (["--data-root", "x"], "--data-root is for --full"),
                          (["--force", "--fast"], "unknown argument --fast"),
                          (["--full", "--data-root"], "--data-root needs a folder")):
        result = run_all(tmp_path, *args)
        assert result.returncode == 2 and message in result.stderr
    usage = run_all(tmp_path, "--help")
    assert usage.returncode == 0 and "bash run_all.sh --full [--data-root DIR]" in usage.stdout
    assert "bash run_all.sh --force" in usage.stdout and "drift" in usage.stdout


@pytest.mark.slow
def test_a_fresh_clone_recomputes_every_row_reports_drift_then_runs_the_notebooks_past_a_broken_table(tmp_path):
    shutil.copy(REPO / "run_all.sh", tmp_path)
    toy_paper(tmp_path, rows=[{"name": "Only row", "config": "base.yaml", "published": "first"}])
    write_yaml(tmp_path / "experiments" / "broken" / "t.yaml",
               {"title": "Broken", "paper": "broken", "metrics": ["map"], "rows": [{"name": "a", "config": "no.yaml"}]})
    (tmp_path / "experiments" / "broken" / "not_yaml.yaml").write_text("title: x\nrows: [unclosed\n")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import csv\n"
        "rows = [line['row'] for line in csv.DictReader(open('../results/demo/toy/t.csv'))]\n"
        "open('../results/demo/toy/rows.txt', 'w').write(','.join(rows))")])
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "toy.ipynb")
    # the clone's committed results: a line made by older code, with a number the fresh run will not reproduce
    committed = tmp_path / "results" / "demo" / "toy" / "t.csv"
    write_csv(committed, [{"row": "Only row", "recall@1": "0.50", "map": "0.50", "published recall@1": "61.3",
                           "config_hash": "0", "code": "0123456789ab", "commit": "feedbeef", "status": "done"}])
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "a clone")

    result = run_all(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr  # the broken table is reported...
    assert "experiments/broken/t.yaml" in result.stdout and "no.yaml" in result.stdout
    assert "experiments/broken/not_yaml.yaml" in result.stdout and "not valid YAML" in result.stdout
    (line,) = read_csv(committed)  # ...and the other table ran: trained again, not kept
    assert line["status"] == "done" and line["published recall@1"] == "61.3" and line["code"] != "0123456789ab"
    assert "toy/t: 'Only row' done in" in result.stdout
    drift = (tmp_path / "results" / "demo" / "drift.md").read_text()
    ours = float(line["recall@1"])
    assert f"- BEYOND TOLERANCE: results/demo/toy/t.csv: 'Only row': recall@1 {ours - 0.5:+.2f}" in drift
    assert "== drift from the committed results" in result.stdout and drift.splitlines()[0] in result.stdout
    assert (tmp_path / "results" / "demo" / "toy" / "rows.txt").read_text() == "Only row"  # notebooks ran after
    assert "notebooks/toy.ipynb: executed" in result.stdout and "total:" in result.stdout
