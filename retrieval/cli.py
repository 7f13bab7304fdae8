"""Command line: ``python -m retrieval {train,evaluate,table,data,zoo,bench,qualitative,extract,search} ...``."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from pathlib import Path

BENCHMARKS = ("losses", "knn", "multistage", "train")
#: Subcommands of retrieval.use (a trained model on its evaluation data or on your own images).
USE_COMMANDS = {"qualitative": "draw queries and their top-k retrievals (PNG, HTML)",
                "extract": "descriptors of a folder of images, with their paths, in one .npz",
                "search": "the indexed images nearest to query images"}


def _train(args) -> None:
    from retrieval.config import config_hash, load_config
    from retrieval.engine.trainer import train

    cfg = load_config(args.config, args.overrides)
    output = args.output or Path("runs") / f"{Path(args.config).stem}-{config_hash(cfg)}"
    result = train(cfg, output, progress=not args.quiet)
    print(json.dumps(result["metrics"], indent=2, sort_keys=True))
    print(f"run directory: {output}", file=sys.stderr)


def _evaluate(args) -> None:
    from retrieval.config import ConfigError, load_config
    from retrieval.engine.saved_model import model_file, run_config
    from retrieval.engine.trainer import evaluate_checkpoint

    if Path(args.config).is_dir():  # a run directory: its own config (unless --config) and model.pt
        cfg = run_config(args.config, args.config_file, args.overrides)
        checkpoint = args.checkpoint or model_file(args.config)
    elif args.checkpoint is None:
        raise ConfigError(f"{args.config} is a config file, so --checkpoint is needed (or give a run directory)")
    else:
        cfg, checkpoint = load_config(args.config, args.overrides), args.checkpoint
    metrics = evaluate_checkpoint(cfg, checkpoint, progress=not args.quiet)
    text = json.dumps(metrics, indent=2, sort_keys=True)
    if args.output:
        from retrieval.io import write_text

        write_text(args.output, text + "\n")
    print(text)


def _delegate(module: str, function: str = "main"):
    """A subcommand whose arguments the named module's ``main(argv)`` (or ``function``) parses itself."""
    def run(args) -> None:
        getattr(importlib.import_module(module), function)(args.rest)

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

    evaluate = sub.add_parser("evaluate", help="evaluate a run directory, or a config with --checkpoint")
    evaluate.add_argument("config", help="a run directory (its config.yaml and model.pt) or a config file")
    evaluate.add_argument("overrides", nargs="*")
    evaluate.add_argument("--checkpoint", help="model file (default for a run directory: its model.pt)")
    evaluate.add_argument("--config", dest="config_file", help="with a run directory: use this config instead")
    evaluate.add_argument("--output", help="also write the metrics to this JSON file")
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(run=_evaluate)

    table = sub.add_parser("table", help="run every row of an experiments table", add_help=False)
    table.add_argument("rest", nargs=argparse.REMAINDER)
    table.set_defaults(run=_delegate("retrieval.tables"))

    # ``data verify --help`` and ``bench knn --help`` reach the delegate (REMAINDER takes them); ``data --help``
    # and ``bench --help`` are answered here.
    data = sub.add_parser("data", help="dataset tools: data verify NAME --root DIR; data export digits --output DIR",
                          description="Dataset tools. `python -m retrieval data ACTION --help` lists ACTION's options.")
    data.add_argument("action", choices=["verify", "export"],
                      help="verify: check a prepared dataset against the published statistics and decode its images; "
                           "export: write a bundled dataset out as image files")
    data.add_argument("rest", nargs=argparse.REMAINDER, help="the action's arguments")
    data.set_defaults(run=lambda args: _delegate(f"retrieval.data.{args.action}")(args))

    zoo = sub.add_parser("zoo", help="released networks: zoo list | zoo evaluate NAME --weights FILE ...",
                         add_help=False)
    zoo.add_argument("rest", nargs=argparse.REMAINDER)
    zoo.set_defaults(run=_delegate("retrieval.zoo.evaluate"))

    bench = sub.add_parser("bench", help=f"benchmarks: {', '.join(BENCHMARKS)}",
                           description="Benchmarks. `python -m retrieval bench NAME --help` lists NAME's options.")
    bench.add_argument("name", choices=BENCHMARKS)
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's arguments")
    bench.set_defaults(run=lambda args: _delegate(f"benchmarks.{args.name}")(args))

    for name, help_text in USE_COMMANDS.items():
        use = sub.add_parser(name, help=help_text, add_help=False)
        use.add_argument("rest", nargs=argparse.REMAINDER)
        use.set_defaults(run=_delegate("retrieval.use", f"{name}_main"))
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
    if argv[:1] and argv[0] in ("table", *USE_COMMANDS) and argv[1:2] != ["--"]:
        argv = [argv[0], "--", *argv[1:]]  # REMAINDER refuses a first argument like an option
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
