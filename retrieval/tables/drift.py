"""How far freshly computed results are from the committed ones: ``python -m retrieval.tables.drift``.

The committed results files are what a visitor reads without running anything; after ``run_all.sh`` recomputes
them, this report says row by row how far each fresh number moved from the committed one (read from git, so the
working tree may already hold the fresh files) and names every number that moved more than the tolerance.
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from retrieval.io import write_text
from retrieval.tables.provenance import committed_text
from retrieval.tables.results import DONE, display_path, metric_columns, number

# percentage points; demo test sets have a few hundred queries, where one query moves Recall@1 by ~0.4
TOLERANCE = 1.0


@dataclass
class RowDrift:
    table: str
    row: str
    deltas: dict[str, float]  # metric -> fresh - committed, percentage points
    note: str = ""

    def beyond(self, tolerance: float) -> dict[str, float]:
        return {m: d for m, d in self.deltas.items() if abs(d) > tolerance}


def _lines(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text))
    return list(reader.fieldnames or []), {line.get("row") or "": line for line in reader}


def is_results_file(path: Path) -> bool:
    """Whether ``path`` is a table's results CSV (it has the runner's bookkeeping columns)."""
    header, _ = _lines(path.read_text(encoding="utf-8").split("\n", 1)[0] + "\n")
    return {"row", "status", "config_hash"} <= set(header)


def table_drift(path: Path, ref: str = "HEAD") -> list[RowDrift]:
    """One :class:`RowDrift` per row of the results CSV at ``path`` against its version committed at ``ref``."""
    name = display_path(path)
    committed = committed_text(path, ref)
    header, fresh = _lines(path.read_text(encoding="utf-8"))
    if committed is None:
        return [RowDrift(name, row, {}, f"no committed version at {ref}") for row in fresh]
    old_header, old = _lines(committed)
    metrics = [m for m in metric_columns(header) if m in old_header]
    drifts = []
    for row, line in fresh.items():
        before = old.get(row)
        if before is None:
            drifts.append(RowDrift(name, row, {}, f"new row (not in the committed file at {ref})"))
            continue
        if line.get("status") != DONE or before.get("status") != DONE:
            drifts.append(RowDrift(name, row, {}, f"status {line.get('status')!r} now, {before.get('status')!r} "
                                                  "committed: not compared"))
            continue
        pairs = {m: (number(line.get(m)), number(before.get(m))) for m in metrics}
        drifts.append(RowDrift(name, row, {m: round(a - b, 2) for m, (a, b) in pairs.items()
                                           if a is not None and b is not None}))
    drifts += [RowDrift(name, row, {}, "committed row no longer in the table") for row in old if row not in fresh]
    return drifts


def report(drifts: list[RowDrift], tolerance: float, ref: str) -> str:
    """The markdown report: a summary naming every row beyond ``tolerance``, then one line per row."""
    beyond = [d for d in drifts if d.beyond(tolerance)]
    compared = [d for d in drifts if d.deltas]
    lines = [f"# Drift of the fresh results from the committed ones ({ref})", "",
             f"Tolerance: {tolerance:g} percentage points per metric. {len(compared)} row(s) compared, "
             f"{len(beyond)} beyond the tolerance, {len(drifts) - len(compared)} not compared.", ""]
    lines += [f"- BEYOND TOLERANCE: {d.table}: {d.row!r}: " + ", ".join(f"{m} {v:+.2f}" for m, v in
                                                                         d.beyond(tolerance).items())
              for d in beyond]
    lines += ["", "| table | row | largest drift | metrics (fresh - committed) | note |", "|---|---|---|---|---|"]
    for d in drifts:
        largest = f"{max(map(abs, d.deltas.values())):.2f}" if d.deltas else ""
        deltas = ", ".join(f"{m} {v:+.2f}" for m, v in d.deltas.items())
        lines.append(f"| {d.table} | {d.row.replace('|', chr(92) + '|')} | {largest} | {deltas} | {d.note} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m retrieval.tables.drift", description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=Path("results/demo"),
                   help="folder of results CSVs, <paper>/<table>.csv (default: %(default)s)")
    p.add_argument("--ref", default="HEAD", help="the git revision holding the committed results (default: HEAD)")
    p.add_argument("--tolerance", type=float, default=TOLERANCE,
                   help="percentage points a metric may move before it is named (default: %(default)s)")
    p.add_argument("--output", type=Path, help="where to write the report (default: <results>/drift.md)")
    args = p.parse_args(argv)
    # table results only (results/benchmarks/*.csv are measurements of another kind)
    paths = [path for path in sorted(args.results.glob("*/*.csv")) if is_results_file(path)]
    if not paths:
        print(f"no results CSV under {args.results}", file=sys.stderr)
        return 2
    text = report([d for path in paths for d in table_drift(path, args.ref)], args.tolerance, args.ref)
    output = args.output or args.results / "drift.md"
    write_text(output, text)
    print(text + f"\nwritten to {display_path(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
