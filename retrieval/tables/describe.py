"""What a row measured, derived from its resolved config, and our value of each claim about a table.

Demo rows stand in for paper rows on other data; their results must say what they really measured (dataset,
classes, metric), not what the paper's column is called, and a claim of the paper is shown beside our value of
it, never as confirmed by a demo number.
"""
from __future__ import annotations

from retrieval.config import Config
from retrieval.data.datasets.parsing import DatasetNotFoundError
from retrieval.tables.spec import Claim, Relation, Table

# metric keys as the protocols name them -> the field's names
METRIC_NAMES = {"map": "mAP", "map@r": "MAP@R", "r-precision": "R-precision"}


def metric_label(key: str) -> str:
    """``"roxford5k/map@r"`` -> ``"MAP@R on eval target roxford5k"``; ``"recall@1"`` -> ``"Recall@1"``."""
    *prefix, metric = key.split("/")
    name = METRIC_NAMES.get(metric) or (metric.replace("recall@", "Recall@") if metric.startswith("recall@") else
                                        metric.replace("mp@", "mP@"))
    return f"{name} on eval target {'/'.join(prefix)}" if prefix else name


def _split_size(dataset, root, split: str) -> str:
    """``"20 classes, 240 images"`` of ``split``: counted on the data when it is there, else the published size
    (docs/sources.md, via retrieval.data.verify), else unknown."""
    from retrieval.data.verify import PUBLISHED
    from retrieval.engine.evaluate import splits_of

    try:
        labels = splits_of(dataset, root)[split].labels
        return f"{len(set(labels.tolist())):,} classes, {len(labels):,} images"
    except (DatasetNotFoundError, KeyError, OSError, ValueError):
        stats = PUBLISHED.get(dataset.name, {}).get(split)
        if stats is not None and stats.classes is not None:
            images = f", {stats.images:,} images" if stats.images else ""
            return f"{stats.classes:,} classes{images} (published size)"
        if stats is not None and stats.queries is not None and stats.gallery is not None:
            return f"{stats.queries:,} queries, {stats.gallery:,} database images (published size)"
        return "size unknown until prepared"


def _dataset(component) -> str:
    seed = component.args.get("seed")
    return component.name + (f" (seed {seed})" if seed is not None else "")


def measured(cfg: Config) -> str:
    """``train: synthetic (seed 0) train, 20 classes, 240 images; test: synthetic (seed 0) test, ...``."""
    parts = [f"train: {_dataset(cfg.data.dataset)} {cfg.data.train_split}, "
             f"{_split_size(cfg.data.dataset, cfg.data.root, cfg.data.train_split)}"]
    for name, target in cfg.eval.targets.items():
        dataset = target.dataset or cfg.data.dataset
        root = target.root if target.dataset is not None else cfg.data.root
        for split in target.splits:
            parts.append(f"{name}: {_dataset(dataset)} {split}, {_split_size(dataset, root, split)}, "
                         f"{target.protocol.name.replace('_', '-')} protocol")
    return "; ".join(parts)


def columns_measured(table: Table, demo: bool) -> str:
    """One sentence naming the metric each column shows at this scale (the targets' data are in ``measured``)."""
    return "Columns: " + "; ".join(f"`{column}` = {metric_label(table.metric_source(column, demo))}"
                                   for column in table.metrics) + " (each eval target's data: see `measured`)."


def quoted(rows) -> str:
    """Row names in double quotes, comma-separated (row names contain commas themselves)."""
    return ", ".join(f'"{row}"' for row in rows)


def _value(relation: Relation, numbers: dict[str, float], row: str) -> float | None:
    values = [numbers.get(f"{row}\0{m}") for m in relation.metrics]
    return None if any(v is None for v in values) else sum(values) / len(values)


def relation_value(relation: Relation, numbers: dict[str, float]) -> float | None:
    """Our value of ``relation``: the row's value (``value``), or its margin over the best of the ``over`` rows
    (``gain``, ``no_gain``); None while a row has no number. ``numbers`` maps ``"<row>\\0<column>"`` to percent."""
    mine = _value(relation, numbers, relation.row)
    if mine is None or relation.kind == "value":
        return mine
    others = [_value(relation, numbers, row) for row in relation.over]
    return None if any(v is None for v in others) else mine - max(others)


def holds(relation: Relation, value: float) -> bool | None:
    """Whether our ``value`` of ``relation`` agrees with the claim (None for a plain value)."""
    if relation.kind == "gain":
        return value > 0
    if relation.kind == "no_gain":
        return value <= relation.within
    return None


def _describe(relation: Relation, value: float) -> str:
    metric = relation.metrics[0] if len(relation.metrics) == 1 else f"mean of {', '.join(relation.metrics)}"
    if relation.kind == "value":
        stated = f", stated {relation.stated:g}" if relation.stated is not None else ""
        return f"{quoted([relation.row])}: {value:.2f} {metric}{stated}"
    stated = f"; stated {relation.stated:+g}" if relation.stated is not None else ""
    within = f" (claim: at most {relation.within:g} above)" if relation.kind == "no_gain" else ""
    return f"{quoted([relation.row])} - best of [{quoted(relation.over)}] = {value:+.2f} {metric}{within}{stated}"


def verdict(claim: Claim, numbers: dict[str, float], demo: bool) -> str:
    """``"demo: <value>"`` at demo scale; ``"holds: <value>"`` / ``"does not hold: <value>"`` at paper scale;
    empty for a claim that is no relation between rows."""
    relation = claim.relation
    if relation is None:
        return ""
    value = relation_value(relation, numbers)
    if value is None:
        return "not evaluated yet: a row it names has no number"
    text = _describe(relation, value)
    if demo:
        return f"demo: {text}"
    agrees = holds(relation, value)
    return f"ours: {text}" if agrees is None else f"{'holds' if agrees else 'does not hold'}: {text}"
