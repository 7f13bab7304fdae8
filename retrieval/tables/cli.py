"""``python -m retrieval table`` (or ``python -m retrieval.tables``): run table files, list them, summarise."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from retrieval.config import ConfigError
from retrieval.engine.evaluate import DATA_ROOT_ENV
from retrieval.tables.results import display_path


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m retrieval table",
        description="Run every row of a paper table and write results/[demo/]<paper>/<table>.{csv,md} with our "
                    "metrics beside the published ones. Rows already in the results with the same resolved "
                    "config, made by the same code, are kept (--force recomputes them); an interrupted row resumes "
                    "from its last checkpoint.")
    p.add_argument("tables", nargs="*", type=Path,
                   help="table files, e.g. experiments/smooth_ap/table_sop.yaml (--list shows them)")
    p.add_argument("--demo", action="store_true",
                   help="demo scale: bundled data, tiny CNN, CPU; writes under results/demo/")
    p.add_argument("--rows", nargs="+", metavar="NAME", help="run only these rows (others keep their lines)")
    p.add_argument("--force", action="store_true",
                   help="recompute the selected rows (--rows, else every row) even when their results are current")
    p.add_argument("--data-root", type=Path,
                   help=f"folder holding one prepared folder per dataset (default: ${DATA_ROOT_ENV})")
    p.add_argument("--all", action="store_true", help="every table file under --experiments")
    p.add_argument("--list", action="store_true", help="print the table files under --experiments and exit")
    p.add_argument("--experiments", type=Path, default=Path("experiments"), help="default: %(default)s")
    p.add_argument("--results", type=Path, default=Path("results"), help="default: %(default)s")
    p.add_argument("--runs", type=Path, default=Path("runs/tables"), help="run directories (default: %(default)s)")
    p.add_argument("--progress", action="store_true", help="show progress bars while training")
    return p


def summary(reports, errors: dict[str, str], seconds: float) -> str:
    lines = ["", f"{'table':<40} {'computed':>8} {'kept':>5} {'skipped':>7} {'failed':>6} {'seconds':>8}"]
    for r in reports:
        lines.append(f"{r.table.paper + '/' + r.table.name:<40} {len(r.computed):>8} {len(r.kept):>5} "
                     f"{len({s.row for s in r.skipped}):>7} {len(r.failed):>6} {r.seconds:>8.1f}")
    lines += [f"{name:<40} ERROR: {why}" for name, why in errors.items()]
    prepare = {}
    for r in reports:
        for skip in r.skipped:
            prepare.setdefault(skip.dataset, (skip.command, []))[1].append(f"{r.table.paper}/{r.table.name}")
    for dataset, (command, tables) in sorted(prepare.items()):
        lines.append(f"skipped dataset {dataset!r} (tables: {', '.join(sorted(set(tables)))}); "
                     f"prepare it with `{command}`")
    failed = [f"{r.table.paper}/{r.table.name}: {name!r}" for r in reports for name in r.failed]
    lines += [f"failed row {item}" for item in failed]
    lines.append(f"{len(reports)} table(s) in {seconds:.1f} s; results under "
                 + ", ".join(sorted({display_path(r.results.parent.parent) for r in reports})) if reports
                 else f"no table ran ({seconds:.1f} s)")
    return "\n".join(lines)


def use_data_root(data_root: Path | None, demo: bool) -> str | None:
    """Point ``$RETRIEVAL_DATA_ROOT`` at ``--data-root``; a usage error when the root in use is not a folder.

    Returns a note to print when rows are skipped for want of data and no data root is set at all.
    """
    if data_root is not None:
        if not data_root.is_dir():
            parser().error(f"--data-root {data_root} is not a folder")
        os.environ[DATA_ROOT_ENV] = str(data_root.resolve())
    root = os.environ.get(DATA_ROOT_ENV)
    if demo:  # bundled data only
        return None
    if root and not Path(root).is_dir():
        parser().error(f"${DATA_ROOT_ENV}={root} is not a folder; set it to the folder holding the prepared "
                       "datasets, or pass --data-root")
    if root:
        return None
    return (f"note: neither --data-root nor ${DATA_ROOT_ENV} is set, so datasets were looked for only where a "
            "config's data.root points; pass --data-root DIR (the folder holding one prepared folder per dataset)")


def main(argv: list[str] | None = None) -> None:
    from retrieval.tables.runner import TableRun
    from retrieval.tables.spec import find_tables, load_table

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `python -m retrieval table -- --all` passes the separator through
        argv = argv[1:]
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.list:
        for path in find_tables(args.experiments):
            print(display_path(path))
        return
    if args.all == bool(args.tables):
        parser().error("give table files or --all (not both)")
    tables = find_tables(args.experiments) if args.all else args.tables
    if args.rows and len(tables) != 1:
        parser().error("--rows needs exactly one table file")
    note = use_data_root(args.data_root, args.demo)
    started, reports, errors = time.time(), [], {}
    for path in tables:
        try:
            run = TableRun(load_table(path), args.demo, args.results, args.runs, progress=args.progress,
                           force=args.force, force_since=started)
            reports.append(run.run(args.rows))
        except ConfigError as error:
            if len(tables) == 1:
                raise
            errors[display_path(path)] = str(error)
            print(f"{display_path(path)}: {error}", file=sys.stderr)
    print(summary(reports, errors, time.time() - started))
    if note and any(r.skipped for r in reports):
        print(note)
    if errors or any(r.failed for r in reports):
        raise SystemExit(1)
