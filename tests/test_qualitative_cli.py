"""The ``qualitative`` command's choice of source: clear errors before any model is loaded."""
from pathlib import Path

import pytest

from retrieval.cli import main as cli
from retrieval.tables.spec import TableError
from retrieval.use import table_run_dir

TABLE = Path(__file__).resolve().parents[1] / "experiments" / "smooth_ap" / "table_inaturalist.yaml"


def test_a_table_row_without_a_run_says_how_to_train_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train it with: python -m retrieval table .*table_inaturalist.yaml "
                                                r"--rows 'Smooth-AP \(B=384\)' --demo"):
        table_run_dir(TABLE, "Smooth-AP (B=384)", demo=True, runs_root=tmp_path)
    with pytest.raises(TableError, match="has no row 'Smooth AP'"):
        table_run_dir(TABLE, "Smooth AP", demo=True, runs_root=tmp_path)


def test_qualitative_needs_one_source_and_an_output(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli(["qualitative", "--output", "g.png"])
    assert "give either MODEL" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["qualitative", str(tmp_path)])
    assert "give --output PNG and/or --html PAGE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        cli(["qualitative", str(tmp_path / "missing"), "--output", "g.png"])
    assert stopped.value.code == 1
    assert "is neither a run directory nor a model file" in capsys.readouterr().err
