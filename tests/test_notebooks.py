"""Every notebook runs headless (nbclient) on the committed demo results and writes its figures."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from retrieval.tables.notebooks import execute_notebook
from retrieval.tables.spec import find_tables

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PAPERS = sorted({path.parent.name for path in find_tables(REPO / "experiments")})


def test_every_paper_with_tables_has_a_notebook():
    missing = [f"notebooks/{paper}.ipynb" for paper in PAPERS if not (REPO / "notebooks" / f"{paper}.ipynb").is_file()]
    assert not missing, f"papers with tables but no notebook: {missing}"


def repository_copy(tmp_path: Path, notebook: Path) -> Path:
    """The notebook, the results without their figures, and the experiments, laid out as in the repository."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(notebook, tmp_path / "notebooks")
    shutil.copytree(REPO / "results", tmp_path / "results", ignore=shutil.ignore_patterns("*.png"))
    shutil.copytree(REPO / "experiments", tmp_path / "experiments")
    return tmp_path / "notebooks" / notebook.name


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_notebook_regenerates_its_figures_from_demo_results(notebook, tmp_path):
    paper = notebook.stem
    figures = tmp_path / "results" / "demo" / paper if paper in PAPERS else tmp_path / "results"
    if paper in PAPERS:
        demo_results = REPO / "results" / "demo" / paper
        assert any(demo_results.glob("*.csv")), (f"no demo results in {demo_results}: run `bash run_all.sh` "
                                                 "(or `python -m retrieval.tables --all --demo`) and commit them")
    execute_notebook(repository_copy(tmp_path, notebook), timeout=120)
    assert list(figures.rglob("*.png")), f"{notebook.name} wrote no PNG figure under {figures}"
