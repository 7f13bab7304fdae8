"""A table's results files: one line per row with our metrics, the published ones, their difference,
the source, the config hash, the command that reproduces the row, the commit and the row's status."""
from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.io import write_table
from retrieval.tables.spec import Row, Table

DONE, SKIPPED, FAILED, NOT_RUN, STALE = "done", "skipped", "failed", "not run", "stale"
DEMO_NOTICE = ("**Demo scale: these numbers are NOT comparable to the paper.** They come from `--demo` runs on "
               "the bundled data (scikit-learn digits or synthetic images) with a tiny CNN trained for a few epochs "
               "on CPU; they show that every row runs end to end. The published columns are the paper's numbers at "
               "full scale.")
LEGEND = ("Metrics are percentages. `published <metric>`: the number reported for this row by the source in "
          "`source`; an empty cell means no source confirms one. `diff <metric>` = ours - published. `status`: "
          "done; skipped (dataset not prepared, see `note`); failed (see `note`); not run; stale (the row's config "
          "changed since it ran: rerun it with its `command`).")


@dataclass
class Outcome:
    """What is known about one row: its status and, when done, its metrics in percent (2 decimals)."""

    status: str
    config_hash: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    commit: str = ""
    note: str = ""

    def complete_for(self, config_hash: str, metrics: list[str]) -> bool:
        """Whether this outcome already holds every metric of the run with ``config_hash``."""
        return self.status == DONE and self.config_hash == config_hash and all(m in self.metrics for m in metrics)


def percent(fraction: float) -> float:
    """A metric fraction as the percentage the results files show (2 decimals)."""
    return round(100.0 * float(fraction), 2)


def columns(metrics: list[str]) -> list[str]:
    return ["row", *metrics, *(f"published {m}" for m in metrics), *(f"diff {m}" for m in metrics),
            "source", "config_hash", "command", "commit", "status", "note"]


def results_stem(results_root: str | Path, table: Table, demo: bool) -> Path:
    """``results/<paper>/<table>`` or ``results/demo/<paper>/<table>`` (``.csv`` and ``.md`` are added)."""
    base = Path(results_root) / "demo" if demo else Path(results_root)
    return base / table.paper / table.name


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when inside it (how a user types it), else absolute."""
    resolved = path.resolve()
    try:
        return resolved.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return resolved.as_posix()


def table_command(table: Table, demo: bool) -> str:
    return f"python -m retrieval table {shlex.quote(display_path(table.path))}" + (" --demo" if demo else "")


def row_command(table: Table, demo: bool, row_name: str) -> str:
    escaped = "".join("\\" + c if c in '"\\$`' else c for c in row_name)
    return f'{table_command(table, demo)} --rows "{escaped}"'


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_outcomes(stem: Path, metrics: list[str]) -> dict[str, Outcome]:
    """The outcomes already in ``stem.csv`` by row name (empty when there is no such file)."""
    path = Path(f"{stem}.csv")
    if not path.is_file():
        return {}
    outcomes = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for line in csv.DictReader(handle):
            values = {m: _number(line.get(m)) for m in metrics}
            status = line.get("status") or ""
            # "stale" only describes a finished run against the table's current config; it is decided anew
            outcomes[line.get("row") or ""] = Outcome(
                status=DONE if status == STALE else status, config_hash=line.get("config_hash") or "",
                metrics={m: v for m, v in values.items() if v is not None},
                commit=line.get("commit") or "", note="" if status == STALE else line.get("note") or "")
    return outcomes


def _fixed(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _as_printed(value: float) -> str:
    """A published percentage with the decimals it has (at most 2, at least 1): 66.0, 90.6, 76.81."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def results_line(table: Table, row: Row, outcome: Outcome, demo: bool) -> dict[str, str]:
    published = row.published.values if row.published else {}
    line = {"row": row.name, "source": row.published.source if row.published else "",
            "config_hash": outcome.config_hash, "command": row_command(table, demo, row.name),
            "commit": outcome.commit, "status": outcome.status, "note": outcome.note}
    for metric in table.metrics:
        ours, theirs = outcome.metrics.get(metric), published.get(metric)
        line[metric] = "" if ours is None else _fixed(ours)
        line[f"published {metric}"] = "" if theirs is None else _as_printed(theirs)
        line[f"diff {metric}"] = "" if ours is None or theirs is None else _fixed(round(ours - theirs, 2))
    return line


def write_results(stem: Path, table: Table, outcomes: dict[str, Outcome], demo: bool) -> None:
    """Write ``stem.csv`` and ``stem.md`` (each atomically), one line per row of ``table`` in order."""
    lines = [results_line(table, row, outcomes[row.name], demo) for row in table.rows]
    read_from = [f"`{column}` shows the demo run's `{key}`" for column in table.metrics
                 if (key := table.metric_source(column, demo)) != column]
    notes = [table.description, DEMO_NOTICE if demo else "",
             f"At demo scale the paper's metric is not available for every column: {'; '.join(read_from)}."
             if read_from else "", LEGEND,
             f"Rerun the whole table with `{table_command(table, demo)}`."]
    write_table(stem, lines, columns(table.metrics), title=table.title,
                notes="\n\n".join(n for n in notes if n))
