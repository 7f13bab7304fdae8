"""Command line: ``python -m retrieval {train,evaluate,table,data,bench} ...``."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

BENCHMARKS = ("losses", "knn", "multistage", "train")


def _train(args) -> None:
    from retrieval.config import config_hash, load_config
    from retrieval.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    output = args.output or Path("runs") / f"{Path(args.config).stem}-{config_hash(cfg)}"
    result = train(cfg, output, progress=not args.quiet)
    print(json.dumps(result["metrics"], indent=2, sort_keys=True))
    print(f"run directory: {output}", file=sys.stderr)


def _evaluate(args) -> None:
    from retrieval.config import load_config
    from retrieval.engine.trainer import evaluate_checkpoint

    cfg = load_config(args.config, args.overrides)
    metrics = evaluate_checkpoint(cfg, args.checkpoint, progress=not args.quiet)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    if args.output:
        from retrieval.io import write_text

        write_text(args.output, text + "\n")
    print(text)


def _delegate(module: str):
    """A subcommand whose arguments the named module's ``main(argv)`` parses itself."""
    def run(args) -> None:
        importlib.import_module(module).main(args.rest)

    return run


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="retrieval", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a config; the same --output resumes it")
    train.add_argument("config")
    train.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3")
    train.add_argument("--output", help="run directory (default runs/<config>-<hash>)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(run=_train)

    evaluate = sub.add_parser("evaluate", help="evaluate a checkpoint or a run's model.pt")
    evaluate.add_argument("config")
    evaluate.add_argument("overrides", nargs="*")
    evaluate.add_argument("--checkpoint", required=True)
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(run=_evaluate)

    table = sub.add_parser("table", help="run every row of an experiments table", add_help=False)
    table.add_argument("rest", nargs=argparse.REMAINDER)
    table.set_defaults(run=_delegate("retrieval.tables"))

    # ``data verify --help`` and ``bench knn --help`` reach the delegate (REMAINDER takes them); ``data --help``
    # and ``bench --help`` are answered here.
    data = sub.add_parser("data", help="dataset tools: data verify NAME --root DIR",
                          description="Dataset tools. `python -m retrieval data verify --help` lists verify's options.")
    data.add_argument("action", choices=["verify"], help="verify: check a prepared dataset against the published "
                                                          "statistics and decode its images")
    data.add_argument("rest", nargs=argparse.REMAINDER, help="the action's arguments")
    data.set_defaults(run=lambda args: _delegate(f"retrieval.data.{args.action}")(args))

    bench = sub.add_parser("bench", help=f"benchmarks: {', '.join(BENCHMARKS)}",
                           description="Benchmarks. `python -m retrieval bench NAME --help` lists NAME's options.")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's arguments")
    bench.set_defaults(run=lambda args: _delegate(f"benchmarks.{args.name}")(args))
    return top


def main(argv: list[str] | None = None) -> int:
    from retrieval.config import ConfigError
    from retrieval.data.archives import ChecksumError
    from retrieval.data.datasets.parsing import DatasetFormatError
    from retrieval.data.images import ImageLoadError
    from retrieval.data.safe_pickle import UnsafePickleError
    from retrieval.engine.checkpoint import CheckpointError
    from retrieval.engine.run_dir import RunDirError
    from retrieval.engine.trainer import Interrupted, TrainingError

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["table"] and argv[1:2] != ["--"]:  # REMAINDER refuses a first argument like an option
        argv = ["table", "--", *argv[1:]]
    top = parser()
    args, extra = top.parse_known_args(argv)
    # Overrides may follow options (``--output DIR key=value``), which argparse leaves over.
    if extra and (args.command not in ("train", "evaluate") or any("=" not in e or e.startswith("-") for e in extra)):
        top.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    try:
        args.run(args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2
    except (TrainingError, ImageLoadError, DatasetFormatError, UnsafePickleError, ChecksumError, CheckpointError,
            FileNotFoundError, KeyError, RunDirError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        return 1
    except OSError as error:  # a write that failed (disk full, read-only): one line, not a traceback
        where = f": {error.filename}" if error.filename else ""
        print(f"error: {error.strerror or error}{where}", file=sys.stderr)
        return 1
    except Interrupted as error:
        print(f"interrupted: {error}", file=sys.stderr)
        return 130
    return 0
