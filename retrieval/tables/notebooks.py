"""Execute notebooks headless, as Jupyter would from their own folder: ``python -m retrieval.tables.notebooks
notebooks/*.ipynb``. The notebooks read the results CSVs and write their figures next to them."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbclient
import nbformat


def execute_notebook(path: str | Path, timeout: int = 600) -> float:
    """Run every cell of ``path`` in a fresh kernel working in the notebook's folder; the seconds it took.
    A failing cell raises ``nbclient.exceptions.CellExecutionError`` naming it."""
    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    started = time.time()
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent.resolve())}})
    client.execute()
    return time.time() - started


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval.tables.notebooks", description=__doc__)
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--timeout", type=int, default=600, help="seconds per cell (default: %(default)s)")
    args = p.parse_args(argv)
    failed = []
    for path in args.notebooks:
        try:
            seconds = execute_notebook(path, args.timeout)
        except Exception as error:  # report every failing notebook, then fail
            failed.append(path)
            print(f"{path}: FAILED\n{error}", file=sys.stderr)
        else:
            print(f"{path}: executed in {seconds:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
