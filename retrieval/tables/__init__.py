"""Paper tables: ``python -m retrieval table experiments/<paper>/<table>.yaml [--demo] [--rows NAME ...]``.

The table file format, the results files and ``run_all.sh`` are described in docs/tables.md.
"""
from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    # imported on call so that `python -m retrieval.tables.notebooks` does not pay for torch
    from retrieval.tables.cli import main as run

    run(argv)
