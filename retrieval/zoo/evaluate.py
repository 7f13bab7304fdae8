"""``python -m retrieval zoo list`` and ``python -m retrieval zoo evaluate NAME --weights FILE --dataset roxford5k
--data-root DIR``: a released network through our own evaluation, beside its published numbers."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
from dataclasses import replace
from pathlib import Path

from retrieval.zoo.loaders import LoadedNet, load_cirtorch, load_dirtorch
from retrieval.zoo.registry import CIRTORCH, ZOO, ZooEntry, entry

DATASETS = ("roxford5k", "rparis6k")
KAPPAS = (1, 5, 10)
DISTRACTORS = "revisitop1m"


def list_text() -> str:
    """Every known file: name, layout, where to download it, expected name, checksum, published numbers."""
    lines, sources = [], {}
    for item in ZOO.values():
        digest = f"{item.sha256_prefix}... (prefix in the file name)" if item.sha256_prefix else "none published"
        power = f", power {item.whitening_power}" if item.layout != CIRTORCH else ""
        lines += [f"{item.name}  ({item.layout}: {item.description})",
                  f"  download: {item.url}",
                  f"  file:     {item.file_name}" + (f" (also published as {', '.join(item.other_names)})"
                                                      if item.other_names else ""),
                  f"  sha256:   {digest}",
                  f"  settings: scales {', '.join(f'{s:.4g}' for s in item.scales)}; whitening "
                  f"{item.whitening or 'the network own'}{power}"]
        if not item.published:
            lines.append("  published: no number confirmed by a source here")
        for (dataset, setup, metric), (value, source) in sorted(item.published.items()):
            label = sources.setdefault(source, f"[{len(sources) + 1}]")
            lines.append(f"  published {dataset} {setup} {metric}: {value} {label}")
    return "\n".join(lines + ["", "sources:"] + [f"{label} {source}" for source, label in sources.items()])


def missing_weights_message(item: ZooEntry, weights: str | None) -> str:
    where = f"weights file {weights} does not exist" if weights else "no --weights FILE given"
    return (f"{where}. Download {item.name} ({item.file_name}) from {item.url} , put it e.g. at "
            f"weights/zoo/{item.file_name} and pass --weights weights/zoo/{item.file_name}")


def check_digest(item: ZooEntry, path: str) -> None:
    """The sha256 prefix the authors put in the file name, when there is one."""
    if item.sha256_prefix is None:
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(item.sha256_prefix):
        raise ValueError(f"{path}: sha256 {digest.hexdigest()[:12]}... does not start with {item.sha256_prefix}, the "
                         f"digest {item.name}'s file name {item.file_name} carries: not the released file; download it "
                         f"again from {item.url}")


def load_entry(item: ZooEntry, weights: str) -> LoadedNet:
    """The released file as our model, with the whitening the entry names (multi-scale or not)."""
    if item.layout == CIRTORCH:
        return load_cirtorch(weights, item.whitening, multiscale=len(item.scales) > 1)
    return load_dirtorch(weights, item.whitening, item.whitening_power)


def dataset_folders(data_root: str, datasets, r1m: bool) -> dict[str, tuple[str, bool]]:
    """``{target: (dataset folder, with R1M)}``; a FileNotFoundError saying how to prepare what is missing."""
    targets = {}
    for name in datasets:
        folder = os.path.join(data_root, name)
        if not os.path.isfile(os.path.join(folder, f"gnd_{name}.pkl")):
            raise FileNotFoundError(f"{name} is not prepared: {folder}/gnd_{name}.pkl is missing. Prepare it with "
                                    f"python data_prep/{name}.py --root {folder}")
        targets[name] = (folder, False)
        if r1m and os.path.isfile(os.path.join(data_root, DISTRACTORS, f"{DISTRACTORS}.txt")):
            targets[f"{name}+r1m"] = (folder, True)
    return targets


def zoo_config(loaded: LoadedNet, item: ZooEntry, targets: dict, qe_k: int, qe_alpha: float, batch_size: int,
               max_size: int):
    """The evaluation config of the entry's settings over ``targets`` (see :func:`dataset_folders`)."""
    from retrieval.config import config_from_dict

    protocol = {"name": "revisited", "args": {"kappas": list(KAPPAS), "qe_k": qe_k, "qe_alpha": qe_alpha}}
    eval_targets = {
        target: {"dataset": {"name": target.split("+")[0], "args": {"distractors_root": DISTRACTORS} if r1m else {}},
                 "root": folder, "splits": ["test"], "protocol": protocol}
        for target, (folder, r1m) in targets.items()}
    return config_from_dict({
        "losses": {"ranking": {"name": "smooth_ap"}},  # a valid config names one; evaluation never uses it
        "data": {"test_transform": {"max_size": max_size, "mean": list(loaded.mean), "std": list(loaded.std)},
                 "crop_boxes": True},
        "eval": {"targets": eval_targets, "batch_size": batch_size, "scales": [float(s) for s in item.scales],
                 "scale_power": loaded.scale_power, "scale_antialias": item.antialias}})


def results_rows(item: ZooEntry, metrics: dict[str, float], targets) -> list[dict]:
    """One row per target, setup and metric: ours (percent), published, difference, source."""
    rows = []
    for key, value in metrics.items():
        # The engine leaves out the target's name when there is only one.
        target, setup, metric = key.split("/") if key.count("/") == 2 else (*targets, *key.split("/"))
        published = item.published.get((target, setup, metric)) if "+" not in target else None
        ours = round(100 * value, 2)
        rows.append({"dataset": target, "setup": setup, "metric": metric, "ours": ours,
                     "published": published[0] if published else None,
                     "difference": round(ours - published[0], 2) if published else None,
                     "source": published[1] if published else ""})
    return rows


def markdown(item: ZooEntry, rows: list[dict], settings: str) -> str:
    head = [f"# {item.name} through our evaluation", "", f"{item.description}; {settings}.", "",
            "| dataset | setup | metric | ours | published | difference | source |", "|---|---|---|---|---|---|---|"]
    cell = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    body = [f"| {r['dataset']} | {r['setup']} | {r['metric']} | {cell(r['ours'])} | {cell(r['published'])} | "
            f"{cell(r['difference'])} | {r['source']} |" for r in rows]
    return "\n".join(head + body) + "\n"


def evaluate_zoo(name: str, weights: str | None, datasets, data_root: str, output: str | Path,
                 device: str = "cpu", r1m: bool = True, qe_k: int = 0, qe_alpha: float = 0.0, batch_size: int = 16,
                 max_size: int = 1024, progress: bool = True, **settings) -> list[dict]:
    """Evaluate the released network ``name`` (file ``weights``) on ``datasets`` under ``data_root``;
    write ``results.md`` and ``results.json`` under ``output``; return the rows.

    ``settings`` (``scales``, ``whitening``, ``whitening_power``; None keeps the authors') replace the
    entry's evaluation settings; the results say which were used.
    """
    from retrieval.engine.evaluate import evaluate
    from retrieval.io import write_text

    item = replace(entry(name), **{key: value for key, value in settings.items() if value is not None})
    if not weights or not os.path.isfile(weights):
        raise FileNotFoundError(missing_weights_message(item, weights))
    targets = dataset_folders(data_root, datasets, r1m)
    check_digest(item, weights)
    loaded = load_entry(item, weights)
    cfg = zoo_config(loaded, item, targets, qe_k, qe_alpha, batch_size, max_size)
    rows = results_rows(item, evaluate(loaded.model, cfg, device, progress=progress), list(targets))
    settings_text = (f"scales {', '.join(f'{s:.4g}' for s in item.scales)}, scale power {loaded.scale_power:.4g}, "
                     f"{'' if item.antialias else 'no '}antialiasing, longer side at most {max_size} px, whitening "
                     f"{item.whitening or 'the network own'}"
                     + (f" (power {item.whitening_power})" if item.layout != CIRTORCH else "")
                     + (f", alpha-QE k={qe_k} alpha={qe_alpha}" if qe_k else ""))
    output = Path(output)
    write_text(output / "results.md", markdown(item, rows, settings_text))
    write_text(output / "results.json", json.dumps({"network": name, "weights": str(weights),
                                                    "settings": settings_text, "rows": rows}, indent=2) + "\n")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="retrieval zoo", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="known released files, where to get them, and their published numbers")
    run = sub.add_parser("evaluate", help="evaluate a released network beside its published numbers")
    run.add_argument("name", choices=list(ZOO))
    run.add_argument("--weights", help="the downloaded file")
    run.add_argument("--dataset", action="append", choices=DATASETS,
                     help="roxford5k and/or rparis6k (repeatable; default both)")
    run.add_argument("--data-root", required=True, help="folder holding roxford5k/, rparis6k/ (and revisitop1m/)")
    run.add_argument("--output", help="results folder (default results/zoo/NAME)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--scales", type=float, nargs="+", help="override the authors' scales")
    run.add_argument("--whitening", help="name of a whitening stored in the file (default: the authors')")
    run.add_argument("--whitening-power", type=float, help="deep-image-retrieval PCA power (default: the authors')")
    run.add_argument("--qe", type=float, nargs=2, metavar=("K", "ALPHA"), help="alpha-QE (default: none)")
    run.add_argument("--no-r1m", action="store_true", help="skip +R1M even when revisitop1m/ is prepared")
    run.add_argument("--batch-size", type=int, default=16)
    run.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.action == "list":
        print(list_text())
        return
    qe_k, qe_alpha = (int(args.qe[0]), args.qe[1]) if args.qe else (0, 0.0)
    output = args.output or os.path.join("results", "zoo", args.name)
    try:
        rows = evaluate_zoo(args.name, args.weights, args.dataset or DATASETS, args.data_root, output, args.device,
                            r1m=not args.no_r1m, qe_k=qe_k, qe_alpha=qe_alpha, batch_size=args.batch_size,
                            progress=not args.quiet, scales=tuple(args.scales) if args.scales else None,
                            whitening=args.whitening, whitening_power=args.whitening_power)
    except (ValueError, pickle.UnpicklingError) as error:  # a damaged, foreign or tampered file: say which
        raise SystemExit(f"error: {error}") from None
    print((Path(output) / "results.md").read_text())
    if not args.no_r1m and not any("+r1m" in row["dataset"] for row in rows):
        print(f"no +R1M rows: the distractors are not prepared; add them with python data_prep/{DISTRACTORS}.py "
              f"--root {os.path.join(args.data_root, DISTRACTORS)}", file=sys.stderr)
    print(f"written: {output}/results.md, results.json ({len(rows)} rows)")
