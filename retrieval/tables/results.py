"""A table's results files: one line per row with our metrics, the published ones (with their difference at paper
scale), the source, what the row measured, the config hash, the code fingerprint, the command that reproduces the
row, the commit and the row's status; then the claims about the table."""
from __future__ import annotations

import csv
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.io import csv_text, markdown_table, write_text
from retrieval.tables.describe import metric_label, quoted, verdict
from retrieval.tables.spec import Row, Table

DONE, SKIPPED, FAILED, NOT_RUN, STALE = "done", "skipped", "failed", "not run", "stale"
DEMO_NOTICE = ("**Demo scale: these numbers are NOT comparable to the paper.** They come from `--demo` runs on "
               "the bundled data (scikit-learn digits or synthetic images) with a tiny CNN trained for a few epochs "
               "on CPU; they show that every row runs end to end. The `measured` column says what each row really "
               "measured; the paper's numbers are listed below the table for reference only.")
PAPER_SCALE = "**The table at paper scale** (what the rows stand for; the demo rows measure what `measured` says):"
LEGEND = ("Metrics are percentages. `measured`: the data each row was trained and evaluated on, read from its "
          "resolved config. `code`: fingerprint of the package sources that produced the row and `commit` the "
          "commit they were checked out at (`+uncommitted`: the code differed from it). `status`: done; skipped "
          "(dataset not prepared, see `note`); failed (see `note`); not run; stale (the row's config or code "
          "changed since it ran: rerun it with its `command`).")
FULL_LEGEND = ("`published <metric>`: the number reported for this row by the source in `source`; an empty cell "
               "means no source confirms one. `diff <metric>` = ours - published.")
CLAIMS_LEGEND = ("Results the sources state in words, recorded beside the rows they concern "
                 "(`experiments/{paper}/published.yaml`, `claims:`). A relation between rows is evaluated on our "
                 "numbers: at paper scale it holds or does not hold; at demo scale the value is shown for what it "
                 "is, a demo number.")


@dataclass
class Outcome:
    """What is known about one row: its status and, when done, its metrics in percent (2 decimals)."""

    status: str
    config_hash: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    commit: str = ""
    note: str = ""
    code: str = ""

    def complete_for(self, config_hash: str, metrics: list[str], code: str) -> bool:
        """Whether this outcome already holds every metric of the run with ``config_hash``, made by ``code``."""
        return self.status == DONE and self.config_hash == config_hash and self.code == code \
            and all(m in self.metrics for m in metrics)


def percent(fraction: float) -> float:
    """A metric fraction as the percentage the results files show (2 decimals)."""
    return round(100.0 * float(fraction), 2)


META_COLUMNS = ("row", "source", "measured", "config_hash", "code", "command", "commit", "status", "note")


def columns(metrics: list[str], demo: bool = False) -> list[str]:
    """The CSV columns; at demo scale there is no difference with the published numbers (they are reference only)."""
    return ["row", *metrics, *(f"published {m}" for m in metrics), *([] if demo else (f"diff {m}" for m in metrics)),
            "source", "measured", "config_hash", "code", "command", "commit", "status", "note"]


def metric_columns(header: list[str]) -> list[str]:
    """Our metric columns of a results CSV header (neither a published, diff nor bookkeeping column)."""
    return [c for c in header if c not in META_COLUMNS and not c.startswith(("published ", "diff "))]


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


def number(text: str | None) -> float | None:
    """A CSV cell as a number, or None when empty or not a number."""
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
            values = {m: number(line.get(m)) for m in metrics}
            status = line.get("status") or ""
            # "stale" only describes a finished run against the table's current config; it is decided anew
            outcomes[line.get("row") or ""] = Outcome(
                status=DONE if status == STALE else status, config_hash=line.get("config_hash") or "",
                metrics={m: v for m, v in values.items() if v is not None},
                commit=line.get("commit") or "", note="" if status == STALE else line.get("note") or "",
                code=line.get("code") or "")
    return outcomes


def _fixed(value: float) -> str:
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _as_printed(value: float) -> str:
    """A published percentage with the decimals it has (at most 2, at least 1): 66.0, 90.6, 76.81."""
    text = f"{value:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def results_line(table: Table, row: Row, outcome: Outcome, demo: bool, measured: str = "") -> dict[str, str]:
    published = row.published.values if row.published else {}
    line = {"row": row.name, "source": row.published.source if row.published else "", "measured": measured,
            "config_hash": outcome.config_hash, "code": outcome.code, "command": row_command(table, demo, row.name),
            "commit": outcome.commit, "status": outcome.status, "note": outcome.note}
    for metric in table.metrics:
        ours, theirs = outcome.metrics.get(metric), published.get(metric)
        line[metric] = "" if ours is None else _fixed(ours)
        line[f"published {metric}"] = "" if theirs is None else _as_printed(theirs)
        if not demo:
            line[f"diff {metric}"] = "" if ours is None or theirs is None else _fixed(round(ours - theirs, 2))
    return line


def _demo_headers(table: Table) -> dict[str, str]:
    """Demo scale: a column whose paper metric the demo cannot compute is headed by the metric it holds."""
    return {column: f"{metric_label(key)} (stands for {column})" for column in table.metrics
            if (key := table.metric_source(column, True)) != column}


def _reference_section(table: Table, lines: list[dict]) -> str:
    """Demo scale: the published numbers in a table of their own, never beside (or subtracted from) ours."""
    shown = [line for line in lines if line["source"]]
    if not shown:
        return ""
    cols = ["row", *(f"published {m}" for m in table.metrics), "source"]
    return ("## Published numbers, for reference only\n\nThe paper-scale numbers the sources report for these "
            "rows. They are not comparable with the demo numbers above: other data, other network, other scale.\n\n"
            + markdown_table(shown, cols))


def _claims_section(table: Table, outcomes: dict[str, Outcome], demo: bool) -> str:
    """The claims about ``table``, each with our value of it where it is a relation between rows."""
    if not table.claims:
        return ""
    numbers = {f"{name}\0{metric}": value for name, outcome in outcomes.items() if outcome.status == DONE
               for metric, value in outcome.metrics.items()}
    verdicts = [verdict(claim, numbers, demo) for claim in table.claims]
    items = [f"- {claim.text} ({claim.source}; rows: {quoted(claim.rows)})" + (f". **{verdict}**" if verdict else "")
             for claim, verdict in zip(table.claims, verdicts)]
    return "## Claims\n\n" + CLAIMS_LEGEND.format(paper=table.paper) + "\n\n" + "\n".join(items) + "\n"


def write_results(stem: Path, table: Table, outcomes: dict[str, Outcome], demo: bool,
                  measured: dict[str, str] | None = None, columns_note: str = "") -> None:
    """Write ``stem.csv`` and ``stem.md`` (each atomically), one line per row of ``table`` in order, then (demo)
    the published numbers for reference and the claims about the table with our value of each.
    ``measured`` maps a row to what it measured; ``columns_note`` says which metric each column shows."""
    measured = measured or {}
    lines = [results_line(table, row, outcomes[row.name], demo, measured.get(row.name, "")) for row in table.rows]
    description = f"{PAPER_SCALE} {table.description}" if demo and table.description else table.description
    notes = [DEMO_NOTICE if demo else "", description, columns_note, LEGEND if demo else f"{LEGEND} {FULL_LEGEND}",
             f"Rerun the whole table with `{table_command(table, demo)}`."]
    shown = columns(table.metrics, demo)
    if demo:  # the published columns stay in the CSV (data) but the markdown lists them apart
        shown = [c for c in shown if not c.startswith("published ") and c != "source"]
    headers = _demo_headers(table) if demo else {}
    title = f"{table.title} (demo scale)" if demo else table.title
    sections = [f"# {title}", *(n for n in notes if n),
                markdown_table([{headers.get(k, k): v for k, v in line.items()} for line in lines],
                               [headers.get(c, c) for c in shown]),
                _reference_section(table, lines) if demo else "",
                _claims_section(table, outcomes, demo)]
    write_text(f"{stem}.csv", csv_text(lines, columns(table.metrics, demo)))
    write_text(f"{stem}.md", "\n\n".join(s.strip("\n") for s in sections if s) + "\n")
