"""Use a trained model: look at its retrievals, export descriptors of your own images, search them.

Commands (each takes a run directory, or a model file, which carries its config)::

    python -m retrieval qualitative RUN_DIR --output grid.png [--html page.html] [--select best_worst]
    python -m retrieval qualitative --table experiments/smooth_ap/table_sop.yaml --row "Smooth-AP" --demo --output g.png
    python -m retrieval extract RUN_DIR --images FOLDER|LIST --output index.npz
    python -m retrieval search RUN_DIR --index index.npz --query IMAGE [IMAGE ...] [--top-k 8] [--output grid.png]
"""
from __future__ import annotations

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

from retrieval.evaluation.qualitative import (
    QUERY,
    SELECTIONS,
    UNMARKED,
    Cell,
    Retrievals,
    choose_queries,
    rank_split,
    retrieval_cells,
    write_figure,
)


def table_run_dir(table_path: str | Path, row_name: str, demo: bool, runs_root: str | Path = "runs/tables") -> Path:
    """The run directory ``python -m retrieval table`` trained a table row in (or a finished twin of it)."""
    from retrieval.config import config_hash
    from retrieval.tables.provenance import code_fingerprint
    from retrieval.tables.runner import finished_twin, resolve_config, run_dir_for
    from retrieval.tables.spec import TableError, load_table

    table = load_table(table_path)
    row = next((r for r in table.rows if r.name == row_name), None)
    if row is None:
        raise TableError(f"{table_path} has no row {row_name!r}; its rows: {', '.join(table.row_names())}")
    cfg = resolve_config(table, row, demo)
    code = code_fingerprint()
    run_dir = run_dir_for(runs_root, table, row, cfg, demo, code)
    if (run_dir / "model.pt").is_file():
        return run_dir
    twin = finished_twin(runs_root, demo, config_hash(cfg), code)
    if twin is not None and (twin / "model.pt").is_file():
        return twin
    raise FileNotFoundError(f"row {row_name!r} has no trained model under {runs_root}; train it with: python -m "
                            f"retrieval table {table_path} --rows {row_name!r}{' --demo' if demo else ''}")


def evaluation_retrievals(saved, target: str | None = None, split: str | None = None, k: int = 8,
                          setup: str = "medium", progress: bool = False):
    """Top-k retrievals of every query of one evaluation target of the model's config (the first target, its
    first split, unless named), and the image dataset they index."""
    from retrieval.data.loading import ImageDataset
    from retrieval.engine.distributed import Topology
    from retrieval.engine.evaluate import pick_split, sharded_features, splits_of

    cfg = saved.cfg
    name = target or next(iter(cfg.eval.targets))
    if name not in cfg.eval.targets:
        raise KeyError(f"the config has no evaluation target {name!r}; it has {sorted(cfg.eval.targets)}")
    spec = cfg.eval.targets[name]
    dataset = spec.dataset or cfg.data.dataset
    items = pick_split(splits_of(dataset, spec.root if spec.dataset is not None else cfg.data.root),
                       split or spec.splits[0], dataset.name)
    images = ImageDataset(items, saved.transform(), crop_boxes=cfg.data.crop_boxes)
    features = sharded_features(saved.model, items, cfg, saved.device, progress, Topology())  # as evaluation does
    return rank_split(features, items, spec.protocol.name, k, setup, spec.protocol.args), images


def item_namer(images):
    """Captions for split items: the file name, or ``#index``; with the label."""
    split = images.split

    def name(index: int) -> str:
        base = Path(split.paths[index]).name if split.paths is not None else f"#{index}"
        return f"{base} [{split.labels[index]}]"

    return name


def qualitative_figure(source, png=None, html=None, queries: int = 6, k: int = 8, select: str = "random",
                       seed: int = 0, target: str | None = None, split: str | None = None, setup: str = "medium",
                       config=None, overrides=(), device: str | None = None, progress: bool = False) -> Retrievals:
    """Draw the qualitative figure of a run directory or model file (PNG and/or HTML); the chosen retrievals."""
    from retrieval.engine.saved_model import load_saved_model

    saved = load_saved_model(source, config, overrides, device)
    every, images = evaluation_retrievals(saved, target, split, k, setup, progress)
    chosen = choose_queries(every, queries, select, seed)
    write_figure(retrieval_cells(chosen, images.pil_image, item_namer(images)), png, html,
                 title=f"{saved.path}: {select} queries, top {k}")
    return chosen


def _arguments(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``, less the ``--`` that ``python -m retrieval`` puts before a delegated command's arguments."""
    argv = sys.argv[1:] if argv is None else list(argv)
    return p.parse_args(argv[1:] if argv[:1] == ["--"] else argv)


@contextmanager
def user_errors():
    """Bad input a user can fix is one line on stderr and exit status 1, not a traceback."""
    from retrieval.data.images import ImageLoadError
    from retrieval.engine.checkpoint import CheckpointError

    try:
        yield
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, ImageLoadError, CheckpointError) as error:
        print(f"error: {error.args[0] if isinstance(error, KeyError) else error}", file=sys.stderr)
        raise SystemExit(1) from None


def _model_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("model", nargs=None if required else "?",
                   help="a run directory (its config.yaml and model.pt) or a model file")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. eval.batch_size=64")
    p.add_argument("--config", help="use this config file instead of the run's own")
    p.add_argument("--device", help="default: the config's train.device")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def qualitative_main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m retrieval qualitative",
                                description="Draw queries and their top-k retrievals for a run, model or table row.")
    _model_arguments(p, required=False)
    p.add_argument("--table", help="instead of MODEL: a table file, with --row (and --demo)")
    p.add_argument("--row", help="the table row's name")
    p.add_argument("--demo", action="store_true", help="the row's demo-scale run")
    p.add_argument("--runs", default="runs/tables", help="where table runs are (default: %(default)s)")
    p.add_argument("--output", help="PNG file")
    p.add_argument("--html", help="self-contained HTML page (for large k)")
    p.add_argument("--queries", type=int, default=6, help="number of queries (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=8, help="retrievals per query (default: %(default)s)")
    p.add_argument("--select", choices=SELECTIONS, default="random", help="which queries (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random selection")
    p.add_argument("--target", help="evaluation target of the config (default: its first)")
    p.add_argument("--split", help="split of the target (default: its first)")
    p.add_argument("--setup", default="medium", help="revisited protocol setup: easy, medium or hard")
    args = _arguments(p, argv)
    if (args.model is None) == (args.table is None) or (args.table is not None) != (args.row is not None):
        p.error("give either MODEL (a run directory or model file) or --table FILE --row NAME")
    if args.output is None and args.html is None:
        p.error("give --output PNG and/or --html PAGE")
    with user_errors():
        source = args.model or table_run_dir(args.table, args.row, args.demo, args.runs)
        chosen = qualitative_figure(source, args.output, args.html, args.queries, args.top_k, args.select,
                                    args.seed, args.target, args.split, args.setup, args.config, args.overrides,
                                    args.device, progress=not args.quiet)
    print(f"{len(chosen.queries)} queries x top {chosen.retrieved.shape[1]} written to "
          f"{' and '.join(str(x) for x in (args.output, args.html) if x)}")


def extract_main(argv: list[str] | None = None) -> None:
    from retrieval.engine.export import DEFAULT_SHARD_SIZE, export_features
    from retrieval.engine.saved_model import load_saved_model

    p = argparse.ArgumentParser(prog="python -m retrieval extract",
                                description="Descriptors of every image under a folder (or in a list file), with "
                                            "their paths, in one .npz; resumes an interrupted extraction.")
    _model_arguments(p)
    p.add_argument("--images", required=True, help="a folder (searched recursively) or a file listing image paths")
    p.add_argument("--output", required=True, help="the .npz to write (features, paths, skipped)")
    p.add_argument("--batch-size", type=int, help="default: the config's eval.batch_size")
    p.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                   help="images per resumable shard (default: %(default)s)")
    p.add_argument("--workers", type=int, default=0, help="image loading processes (default: %(default)s)")
    args = _arguments(p, argv)
    with user_errors():
        saved = load_saved_model(args.model, args.config, args.overrides, args.device)
        result = export_features(saved, args.images, args.output, args.batch_size or saved.cfg.eval.batch_size,
                                 args.shard_size, args.workers, progress=not args.quiet)
    for reason in result.reasons:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{result.count} images extracted to {result.path}; {len(result.skipped)} unreadable images skipped")


def search_main(argv: list[str] | None = None) -> None:
    from retrieval.config import config_hash
    from retrieval.data.images import load_image
    from retrieval.engine.saved_model import load_saved_model
    from retrieval.engine.search import FeatureIndex, query_features

    p = argparse.ArgumentParser(prog="python -m retrieval search",
                                description="The indexed images nearest to each query image, with their cosine "
                                            "similarity.")
    _model_arguments(p)
    p.add_argument("--index", required=True, help="a .npz written by python -m retrieval extract")
    p.add_argument("--query", required=True, nargs="+", help="query image file(s)")
    p.add_argument("--top-k", type=int, default=8, help="results per query (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "faiss"), default="torch",
                   help="exact search with torch (default) or faiss's IndexFlatIP")
    p.add_argument("--output", help="also draw the queries and results as a PNG grid")
    p.add_argument("--html", help="also write them as a self-contained HTML page")
    args = _arguments(p, argv)
    with user_errors():
        index = FeatureIndex.load(args.index, args.backend)
        saved = load_saved_model(args.model, args.config, args.overrides, args.device)
        if index.config_hash not in (None, config_hash(saved.cfg)):
            print(f"warning: {args.index} was extracted under another config than {saved.path}'s; the query and "
                  "index descriptors may not be comparable", file=sys.stderr)
        found = index.search(query_features(saved, args.query), args.top_k)
        rows = []
        for query, scores, ids in zip(args.query, found.scores.tolist(), found.indices.tolist()):
            print(f"query {query}")
            for rank, (score, i) in enumerate(zip(scores, ids), 1):
                print(f"{rank:4d}  {score:.4f}  {index.paths[i]}")
            if args.output or args.html:
                rows.append([Cell(load_image(query), Path(query).name, QUERY)]
                            + [Cell(load_image(index.paths[i]), f"{s:.3f} {Path(index.paths[i]).name}", UNMARKED)
                               for s, i in zip(scores, ids)])
        if rows:
            write_figure(rows, args.output, args.html, title=f"search in {args.index}")


def table_row_figure(table_path: str | Path, row_name: str, png: str | Path, runs_root: str | Path = "runs/tables",
                     work_dir: str | Path | None = None, **options) -> tuple[Retrievals, str]:
    """The qualitative figure of a table row: from its full-scale run when there is one under ``runs_root``,
    else from its demo-scale run, else from the demo-scale run trained now in ``work_dir`` (bundled data, a
    few seconds). ``options`` go to :func:`qualitative_figure`. Returns the retrievals drawn and the scale
    ("full" or "demo")."""
    from retrieval.engine.trainer import train
    from retrieval.tables.runner import resolve_config, slug
    from retrieval.tables.spec import load_table

    for demo in (False, True):
        try:
            source = table_run_dir(table_path, row_name, demo, runs_root)
        except FileNotFoundError:
            continue
        return qualitative_figure(source, png, **options), "demo" if demo else "full"
    if work_dir is None:
        raise FileNotFoundError(f"row {row_name!r} of {table_path} has no trained run under {runs_root}")
    table = load_table(table_path)
    row = next(r for r in table.rows if r.name == row_name)
    run = Path(work_dir) / slug(row.name)
    train(resolve_config(table, row, demo=True), run, progress=False)
    return qualitative_figure(run, png, **options), "demo"


def paper_figure(paper: str, table: str, row: str, root: str | Path = ".", **options) -> tuple[Path, Retrievals, str]:
    """The qualitative figure of a paper's table row (see :func:`table_row_figure`), written to
    ``results/<paper>/qualitative.png`` at full scale or ``results/demo/<paper>/qualitative.png`` at demo
    scale, under the repository ``root``. Returns that path, the retrievals drawn and the scale."""
    import tempfile

    from retrieval.io import write_bytes

    root = Path(root)
    with tempfile.TemporaryDirectory() as work:
        drawn_png = Path(work) / "figure.png"
        drawn, scale = table_row_figure(root / "experiments" / paper / f"{table}.yaml", row, drawn_png,
                                        root / "runs" / "tables", work, **options)
        target = root / "results" / ("demo" if scale == "demo" else "") / paper / "qualitative.png"
        write_bytes(target, drawn_png.read_bytes())
    return target, drawn, scale
