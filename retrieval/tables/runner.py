"""Run a table's rows: resolve each row's config, train it in its own run directory, record the results.

A row is kept, not trained again, when a finished run of its resolved config made by the current code (same
fingerprint) is in its run directory, or, at paper scale, when its results line holds the config's hash, its
metrics and the current code's fingerprint; ``--force`` trains it anew. At paper scale a line made by other code is
marked stale; at demo scale it is recomputed. A row whose run directory holds an unfinished run resumes it from its
last checkpoint (``train`` does).
"""
from __future__ import annotations

import re
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from retrieval.config import Config, ConfigError, config_hash, load_config
from retrieval.data.datasets.parsing import DatasetNotFoundError, prepare_command
from retrieval.engine.evaluate import splits_of
from retrieval.engine.trainer import Interrupted, train
from retrieval.tables.describe import columns_measured, measured
from retrieval.tables.provenance import current_code
from retrieval.tables.results import (
    DONE,
    FAILED,
    NOT_RUN,
    SKIPPED,
    STALE,
    Outcome,
    display_path,
    percent,
    read_outcomes,
    results_stem,
    write_results,
)
from retrieval.tables.spec import Row, Table, TableError


@dataclass
class Skip:
    row: str
    dataset: str
    command: str


@dataclass
class Report:
    """What one table run did, for the summary."""

    table: Table
    results: Path
    computed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def paper_demo_overrides(table: Table) -> dict:
    path = table.paper_demo
    if not path.is_file():
        raise TableError(f"{table.path}: --demo needs the paper's demo-scale overrides in {path} "
                         "(a mapping of dotted config keys: bundled dataset, small_cnn, few epochs)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise TableError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise TableError(f"{path}: must be a mapping of dotted config keys to values")
    return data


def resolve_config(table: Table, row: Row, demo: bool, paper_demo: dict | None = None) -> Config:
    """The row's config: its file, then (demo only) the paper's demo.yaml and the table's demo overrides,
    then the row's overrides, then (demo only) the row's demo overrides."""
    layers = [paper_demo if paper_demo is not None else paper_demo_overrides(table), table.demo_overrides] \
        if demo else []
    layers += [row.overrides, row.demo_overrides] if demo else [row.overrides]
    try:
        return load_config(row.config, *layers, source=f"{table.path} (row {row.name!r})")
    except ConfigError as error:
        raise TableError(f"{table.path}: row {row.name!r}: {error}") from None


def slug(name: str) -> str:
    """A file-name-safe form of a row name: ``"Smooth-AP (BS 224)"`` -> ``"smooth-ap-bs-224"``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "row"


def run_dir_for(runs_root: str | Path, table: Table, row: Row, cfg: Config, demo: bool, code: str) -> Path:
    """``<runs>/[demo/]<paper>/<table>/<row>-<config hash>-<code fingerprint>``: other code, other directory, so a
    finished run of other code is never returned as this code's."""
    base = Path(runs_root) / "demo" if demo else Path(runs_root)
    return base / table.paper / table.name / f"{slug(row.name)}-{config_hash(cfg)}-{code}"


def finished_twin(runs_root: str | Path, demo: bool, digest: str, code: str, since: float | None = None) -> Path | None:
    """A finished run of the same resolved config and code made for another row (tables share their baseline
    rows); with ``since``, only one finished at or after that time (``--force``: made by this invocation)."""
    base = Path(runs_root) / "demo" if demo else Path(runs_root)
    return next((m.parent for m in sorted(base.glob(f"*/*/*-{digest}-{code}/metrics.json"))
                 if since is None or m.stat().st_mtime >= since), None)


def datasets_of(cfg: Config):
    """``(dataset, root)`` of the training set and of every evaluation target."""
    yield cfg.data.dataset, cfg.data.root
    for target in cfg.eval.targets.values():
        yield (target.dataset, target.root) if target.dataset is not None else (cfg.data.dataset, cfg.data.root)


def unprepared_datasets(cfg: Config) -> dict[str, str]:
    """``{dataset name: why}`` for every dataset of ``cfg`` whose files are not where its parser looks."""
    missing = {}
    for dataset, root in datasets_of(cfg):
        try:
            splits_of(dataset, root)
        except DatasetNotFoundError as error:
            missing[dataset.name] = str(error)
    return missing


class TableRun:
    """One run of a table: keeps the results files current after every row."""

    def __init__(self, table: Table, demo: bool, results_root: str | Path, runs_root: str | Path,
                 progress: bool = False, echo: Callable[[str], None] = print, force: bool = False,
                 force_since: float | None = None):
        self.table, self.demo, self.runs_root, self.progress, self.echo = table, demo, runs_root, progress, echo
        # --force: recompute the selected rows, reusing only runs this invocation made (since force_since)
        self.force, self.force_since = force, (time.time() if force_since is None else force_since) if force else None
        self.code, self.commit = current_code()
        paper_demo = paper_demo_overrides(table) if demo else None
        # every row resolves before any trains, so a mistake in the table file costs no training time
        self.configs = {row.name: resolve_config(table, row, demo, paper_demo) for row in table.rows}
        self.hashes = {name: config_hash(cfg) for name, cfg in self.configs.items()}
        self.stem = results_stem(results_root, table, demo)
        self.report = Report(table, self.stem)
        self.measured = {name: self._measured(cfg) for name, cfg in self.configs.items()}

    @staticmethod
    def _measured(cfg: Config) -> str:
        try:
            return measured(cfg)
        except Exception as error:  # a description must never cost a row its training
            return f"not described ({type(error).__name__}: {error})"

    def _write(self, outcomes: dict[str, Outcome]) -> None:
        write_results(self.stem, self.table, outcomes, self.demo, self.measured,
                      columns_measured(self.table, self.demo) if self.demo else "")

    def _label(self, row: Row) -> str:
        return f"{self.table.paper}/{self.table.name}: {row.name!r}"

    def _train_row(self, row: Row) -> Outcome:
        cfg, digest = self.configs[row.name], self.hashes[row.name]
        missing = {} if self.demo else unprepared_datasets(cfg)
        if missing:
            for dataset in missing:
                self.report.skipped.append(Skip(row.name, dataset, prepare_command(dataset)))
                self.echo(f"{self._label(row)} skipped: dataset {dataset!r} is not prepared; "
                          f"prepare it with `{prepare_command(dataset)}`")
            return Outcome(SKIPPED, digest, note="; ".join(f"dataset {name!r} is not prepared ({why})"
                                                           for name, why in missing.items()))
        run_dir = run_dir_for(self.runs_root, self.table, row, cfg, self.demo, self.code)
        if self.force and run_dir.exists():
            shutil.rmtree(run_dir)  # this row's own directory: --force means trained again from scratch
        twin = None if run_dir.exists() else finished_twin(self.runs_root, self.demo, digest, self.code,
                                                           self.force_since)
        if twin is not None:
            run_dir = twin
        finished = (run_dir / "metrics.json").is_file()  # made by this code on this machine: read, not trained
        started = time.time()
        try:
            result = train(cfg, run_dir, progress=self.progress)
        except Interrupted:
            raise
        except Exception as error:  # one broken row must not cost the others; the traceback is printed
            traceback.print_exc()
            return self._failed(row, digest, f"{type(error).__name__}: {error}")
        metrics = result["metrics"]
        keys = {column: self.table.metric_source(column, self.demo) for column in self.table.metrics}
        absent = [key for key in keys.values() if key not in metrics]
        if absent:
            return self._failed(row, digest, f"metrics {absent} are not among the run's metrics {sorted(metrics)} "
                                             f"(run directory {run_dir}); fix the table's metrics or the row's "
                                             "eval config")
        ours = {column: percent(metrics[key]) for column, key in keys.items()}
        (self.report.kept if finished else self.report.computed).append(row.name)
        # named by table and run, not by path: runs/ is not part of the repository
        shared = f"same config and code as run {run_dir.name} of table {run_dir.parent.parent.name}/" \
                 f"{run_dir.parent.name}, not trained again" if twin else ""
        done = f"kept from finished run {display_path(run_dir)} (config {digest}, made by this code {self.code} " \
            f"at commit {self.commit or 'unknown'})" \
            if finished else f"done in {time.time() - started:.1f} s"
        self.echo(f"{self._label(row)} {done}" + (f" ({shared})" if shared and not finished else "")
                  + ": " + ", ".join(f"{m} {v:.2f}" for m, v in ours.items()))
        return Outcome(DONE, digest, ours, commit=self.commit, note=shared, code=self.code)

    def _failed(self, row: Row, digest: str, why: str) -> Outcome:
        self.report.failed.append(row.name)
        self.echo(f"{self._label(row)} FAILED: {why}")
        return Outcome(FAILED, digest, note=why.splitlines()[0] if why else "")

    def run(self, rows: list[str] | None = None) -> Report:
        """Run ``rows`` (default: all) that are not complete yet; other rows keep their existing lines."""
        started = time.time()
        unknown = [name for name in rows or [] if name not in self.configs]
        if unknown:
            raise TableError(f"{self.table.path}: no row named {unknown}; rows are {self.table.row_names()}")
        wanted = set(rows or self.configs)
        previous = read_outcomes(self.stem, self.table.metrics)
        outcomes, todo = {}, []
        for row in self.table.rows:
            old, digest = previous.get(row.name), self.hashes[row.name]
            other_code = old is not None and old.status == DONE and old.config_hash == digest \
                and old.code != self.code
            # demo rows are cheap: a results line is reused only through its finished run directory (so a fresh
            # clone trains every row); paper-scale lines are reused as they are (days of training)
            if old is not None and old.complete_for(digest, self.table.metrics, self.code) \
                    and not (row.name in wanted and (self.force or self.demo)):
                outcomes[row.name] = old
                if row.name in wanted:
                    self.report.kept.append(row.name)
                    self.echo(f"{self._label(row)} kept from {self.stem}.csv (config {digest}, made by this code "
                              f"{self.code} at commit {old.commit or 'unknown'})")
            elif row.name in wanted and (self.demo or self.force or rows or not other_code):
                outcomes[row.name] = Outcome(NOT_RUN, digest)
                todo.append(row)
            elif old is not None and old.status == DONE:
                why = (f"made by other code ({old.code or 'not recorded'} at commit {old.commit or 'unknown'}; the "
                       f"code now is {self.code}): rerun it with --force or its command") if other_code \
                    else f"config changed since this ran (now {digest})" if old.config_hash != digest \
                    else "the table has metrics this run did not record"
                outcomes[row.name] = Outcome(STALE, old.config_hash, old.metrics, old.commit, why, old.code)
            elif old is not None and old.config_hash == digest:
                outcomes[row.name] = old
            else:
                outcomes[row.name] = Outcome(NOT_RUN, digest)
        self._write(outcomes)
        for row in todo:
            if row.name in previous and previous[row.name].code not in ("", self.code):
                self.echo(f"{self._label(row)}: its line was made by other code ({previous[row.name].code}); "
                          "recomputing")
            outcomes[row.name] = self._train_row(row)
            self._write(outcomes)
        self.report.seconds = time.time() - started
        return self.report
