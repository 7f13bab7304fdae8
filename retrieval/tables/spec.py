"""Table files (``experiments/<paper>/<table>.yaml``) and their published numbers, validated.

A table file names a paper, the metric columns and its rows; a row is a config plus overrides and,
optionally, the key of the published entry it is compared with (docs/tables.md has the format).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from retrieval.config import ConfigError
from retrieval.config.loader import load_yaml_tree
from retrieval.registry import closest

TABLE_KEYS = {"title": True, "paper": True, "description": False, "metrics": True, "published": False,
              "demo": False, "rows": True}  # key -> required
ROW_KEYS = {"name": True, "config": True, "overrides": False, "demo_overrides": False, "published": False}
DEMO_KEYS = {"overrides": False, "metrics": False}
PUBLISHED_KEYS = {"sources": True, "entries": True, "claims": False}
ENTRY_KEYS = {"source": True, "values": True}
CLAIM_KEYS = {"table": True, "rows": True, "claim": True, "source": True, "relation": False}
RELATION_KEYS = {"kind": True, "metric": True, "row": True, "over": False, "stated": False, "within": False}
# gain: `row` is above every row of `over`; no_gain: `row` is at most `within` points above them;
# value: `row`'s number beside the stated one (a fact to read, not a relation to check)
RELATION_KINDS = ("gain", "no_gain", "value")
PUBLISHED_FILE = "published.yaml"
PAPER_DEMO = "demo.yaml"
TABLE_ROWS = re.compile(r"^rows\s*:", re.MULTILINE)


class TableError(ConfigError):
    """A table file or published file that cannot be used; the message names the file, key and a fix."""


@dataclass(frozen=True)
class Published:
    """The published numbers one row is compared with (percentages as printed) and their source."""

    values: dict[str, float]
    source: str


@dataclass(frozen=True)
class Relation:
    """A claim as a relation between rows of its table, evaluated on our numbers (docs/tables.md, "Claims").
    ``metrics`` are table columns; with several, a row's value is their mean."""

    kind: str
    metrics: tuple[str, ...]
    row: str
    over: tuple[str, ...] = ()
    stated: float | None = None
    within: float = 0.0


@dataclass(frozen=True)
class Claim:
    """A result a source states in words, recorded beside the table rows it concerns."""

    table: str
    rows: tuple[str, ...]
    text: str
    source: str
    relation: Relation | None = None


@dataclass
class Row:
    name: str
    config: Path
    overrides: dict | list = field(default_factory=dict)
    demo_overrides: dict | list = field(default_factory=dict)
    published: Published | None = None


@dataclass
class Table:
    path: Path
    title: str
    paper: str
    description: str
    metrics: list[str]
    rows: list[Row]
    demo_overrides: dict | list = field(default_factory=dict)
    demo_metrics: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def paper_demo(self) -> Path:
        """The paper's demo-scale overrides, applied to every row under --demo."""
        return self.path.parent / PAPER_DEMO

    def row_names(self) -> list[str]:
        return [row.name for row in self.rows]

    def metric_source(self, column: str, demo: bool) -> str:
        """The key of the run's metrics that ``column`` shows (demo scale may read another metric)."""
        return self.demo_metrics.get(column, column) if demo else column


class _Where:
    """``file:line`` of a dotted key, for error messages."""

    def __init__(self, path: Path, sources: dict[str, str]):
        self.path, self.sources = path, sources

    def __call__(self, key: str) -> str:
        return self.sources.get(key, str(self.path))


def _check_keys(mapping, allowed: dict[str, bool], key: str, where: _Where, what: str) -> None:
    """``mapping`` is a mapping whose keys are all in ``allowed`` and holds the required ones."""
    if not isinstance(mapping, dict):
        raise TableError(f"{where(key)}: {what} must be a mapping, not {type(mapping).__name__}")
    for name in mapping:
        if name not in allowed:
            raise TableError(f"{where(_join(key, name))}: {name!r} is not a key of {what} "
                             f"(known: {', '.join(allowed)}).{closest(name, allowed)}")
    for name, required in allowed.items():
        if required and name not in mapping:
            raise TableError(f"{where(key)}: {what} needs the key {name!r}")


def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _string(value, key: str, where: _Where) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TableError(f"{where(key)}: {key} must be a non-empty string, not {value!r}")
    return value


def _overrides(value, key: str, where: _Where) -> dict | list:
    """A mapping of dotted keys to values, or a list of ``key=value`` strings (as load_config takes)."""
    if value is None:
        return {}
    if isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    raise TableError(f"{where(key)}: {key} must be a mapping of dotted keys to values "
                     f"(e.g. {{data.batch_size: 32}}), not {value!r}")


def _file(folder: Path, value, key: str, where: _Where, what: str) -> Path:
    path = folder / _string(value, key, where)
    if not path.is_file():
        raise TableError(f"{where(key)}: {what} {value!r} not found (looked for {path}); "
                         "paths are relative to the table file")
    return path


def load_published(path: Path) -> tuple[dict[str, str], dict[str, Published]]:
    """``(sources, entries)`` of a published.yaml: source letter -> text, entry key -> numbers."""
    data, sources = load_yaml_tree(path)
    where = _Where(path, sources)
    _check_keys(data, PUBLISHED_KEYS, "", where, f"published file {path}")
    if not isinstance(data["sources"], dict):
        raise TableError(f"{where('sources')}: sources must map a source letter to its description")
    texts = {str(k): _string(v, f"sources.{k}", where) for k, v in data["sources"].items()}
    if not isinstance(data["entries"], dict):
        raise TableError(f"{where('entries')}: entries must be a mapping of entry keys to {{source, values}}")
    entries = {}
    for key, entry in data["entries"].items():
        prefix = f"entries.{key}"
        _check_keys(entry, ENTRY_KEYS, prefix, where, f"published entry {key!r}")
        letter = str(entry["source"])
        if letter not in texts:
            raise TableError(f"{where(prefix + '.source')}: source {letter!r} is not under sources "
                             f"(known: {', '.join(texts) or 'none'})")
        values = entry["values"]
        if not isinstance(values, dict) or not values:
            raise TableError(f"{where(prefix + '.values')}: values must map metric keys to percentages")
        for metric, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TableError(f"{where(f'{prefix}.values.{metric}')}: published value {value!r} is not a "
                                 "number; leave a cell no source confirms out instead")
        entries[str(key)] = Published({str(m): float(v) for m, v in values.items()}, texts[letter])
    return texts, entries


def _strings(value, key: str, where: _Where) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise TableError(f"{where(key)}: {key} must be a row name or a non-empty list of them, not {value!r}")
    return tuple(_string(v, f"{key}.{i}", where) for i, v in enumerate(value))


def _relation(data, key: str, where: _Where) -> Relation:
    _check_keys(data, RELATION_KEYS, key, where, "relation")
    kind = _string(data["kind"], f"{key}.kind", where)
    if kind not in RELATION_KINDS:
        raise TableError(f"{where(key + '.kind')}: relation kind {kind!r} is not one of {', '.join(RELATION_KINDS)}."
                         + closest(kind, RELATION_KINDS))
    over = _strings(data["over"], f"{key}.over", where) if data.get("over") is not None else ()
    if (kind == "value") != (not over):
        raise TableError(f"{where(key)}: a {kind!r} relation " + ("takes no 'over' rows" if kind == "value" else
                                                                  "needs the rows it is compared with in 'over'"))
    numbers = {}
    for name in ("stated", "within"):
        value = data.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise TableError(f"{where(f'{key}.{name}')}: {name} must be a number of percentage points, not {value!r}")
        numbers[name] = None if value is None else float(value)
    return Relation(kind, _strings(data["metric"], f"{key}.metric", where), _string(data["row"], f"{key}.row", where),
                    over, numbers["stated"], numbers["within"] or 0.0)


def load_claims(path: Path) -> list[Claim]:
    """The ``claims:`` of a published.yaml, validated in form (that their table and rows exist is checked when
    the table is loaded, :func:`load_table`)."""
    data, sources = load_yaml_tree(path)
    where = _Where(path, sources)
    claims = data.get("claims") if isinstance(data, dict) else None
    if claims is None:
        return []
    if not isinstance(claims, list):
        raise TableError(f"{where('claims')}: claims must be a list of {{table, rows, claim, source, relation}}")
    parsed = []
    for index, item in enumerate(claims):
        key = f"claims.{index}"
        _check_keys(item, CLAIM_KEYS, key, where, f"claim {index + 1}")
        parsed.append(Claim(table=_string(item["table"], f"{key}.table", where),
                            rows=_strings(item["rows"], f"{key}.rows", where),
                            text=" ".join(_string(item["claim"], f"{key}.claim", where).split()),
                            source=_string(item["source"], f"{key}.source", where),
                            relation=_relation(item["relation"], f"{key}.relation", where)
                            if item.get("relation") is not None else None))
    return parsed


def _table_claims(table_path: Path, names: list[str], metrics: list[str]) -> list[Claim]:
    """The claims of the paper's published.yaml about the table at ``table_path``; each names rows and columns
    of that table, or a :class:`TableError` says which does not."""
    path = table_path.parent / PUBLISHED_FILE
    if not path.is_file():
        return []
    _, sources = load_yaml_tree(path)
    where = _Where(path, sources)
    claims = []
    for index, claim in enumerate(load_claims(path)):
        if claim.table != table_path.stem:
            continue
        relation = claim.relation
        named = [*claim.rows, *((relation.row, *relation.over) if relation else ())]
        for row in named:
            if row not in names:
                raise TableError(f"{where(f'claims.{index}')}: the claim names row {row!r}, which table "
                                 f"{table_path} does not have.{closest(row, names)}")
        for metric in relation.metrics if relation else ():
            if metric not in metrics:
                raise TableError(f"{where(f'claims.{index}.relation.metric')}: {metric!r} is not a column of "
                                 f"{table_path} ({metrics}).{closest(metric, metrics)}")
        claims.append(claim)
    return claims


def _metrics(value, where: _Where) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(m, str) and m for m in value):
        raise TableError(f"{where('metrics')}: metrics must be a non-empty list of metric keys "
                         "(as the evaluation protocol names them, e.g. [recall@1, map])")
    duplicates = sorted({m for m in value if value.count(m) > 1})
    if duplicates:
        raise TableError(f"{where('metrics')}: metrics {duplicates} are listed twice")
    return list(value)


def _demo_metrics(value, metrics: list[str], where: _Where) -> dict[str, str]:
    """``{column: metric the demo run produces}`` for columns whose paper metric has no demo-scale protocol."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TableError(f"{where('demo.metrics')}: demo.metrics must map a column (one of {metrics}) to the "
                         "metric key the demo run produces for it")
    for column, source in value.items():
        if column not in metrics:
            raise TableError(f"{where(f'demo.metrics.{column}')}: {column!r} is not one of the table's metrics "
                             f"{metrics}.{closest(column, metrics)}")
        _string(source, f"demo.metrics.{column}", where)
    return {str(k): v for k, v in value.items()}


def _row(data, index: int, folder: Path, entries: dict[str, Published] | None, where: _Where) -> Row:
    key = f"rows.{index}"
    named = f" ({data['name']!r})" if isinstance(data, dict) and "name" in data else ""
    _check_keys(data, ROW_KEYS, key, where, f"row {index + 1}{named}")
    published = None
    if data.get("published") is not None:
        entry = _string(data["published"], f"{key}.published", where)
        if entries is None:
            raise TableError(f"{where(key + '.published')}: row {data['name']!r} names published entry "
                             f"{entry!r} but the table has no 'published:' file")
        if entry not in entries:
            raise TableError(f"{where(key + '.published')}: no entry {entry!r} in the published file."
                             + closest(entry, entries))
        published = entries[entry]
    return Row(name=_string(data["name"], f"{key}.name", where),
               config=_file(folder, data["config"], f"{key}.config", where, "config"),
               overrides=_overrides(data.get("overrides"), f"{key}.overrides", where),
               demo_overrides=_overrides(data.get("demo_overrides"), f"{key}.demo_overrides", where),
               published=published)


def load_table(path: str | Path) -> Table:
    """The validated table file at ``path``; a :class:`TableError` names the file, key and line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"table file {path} not found")
    data, sources = load_yaml_tree(path)
    where = _Where(path, sources)
    _check_keys(data, TABLE_KEYS, "", where, f"table file {path}")
    sources_text, entries = {}, None
    if data.get("published") is not None:
        sources_text, entries = load_published(_file(path.parent, data["published"], "published", where,
                                                      "published file"))
    demo = data.get("demo") or {}
    if "demo" in data:
        _check_keys(data["demo"], DEMO_KEYS, "demo", where, "demo")
    metrics = _metrics(data["metrics"], where)
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise TableError(f"{where('rows')}: rows must be a non-empty list of rows ({{name, config, ...}})")
    rows = [_row(row, i, path.parent, entries, where) for i, row in enumerate(data["rows"])]
    names = [row.name for row in rows]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise TableError(f"{where('rows')}: row names must be unique; {repeated} appear more than once")
    return Table(path=path, title=_string(data["title"], "title", where),
                 paper=_string(data["paper"], "paper", where),
                 description=str(data.get("description") or "").strip(),
                 metrics=metrics, rows=rows,
                 demo_overrides=_overrides(demo.get("overrides"), "demo.overrides", where),
                 demo_metrics=_demo_metrics(demo.get("metrics"), metrics, where),
                 sources=sources_text, claims=_table_claims(path, names, metrics))


def is_table_file(path: Path) -> bool:
    """Whether ``path`` is a table file (it has a top-level ``rows:`` key), not a base config, demo.yaml or
    published.yaml. Read as text, so that a table file with a YAML mistake is still found and reported."""
    return TABLE_ROWS.search(path.read_text(encoding="utf-8", errors="replace")) is not None


def find_tables(experiments: str | Path) -> list[Path]:
    """Every table file ``<experiments>/<paper>/<table>.yaml``, sorted."""
    folder = Path(experiments)
    if not folder.is_dir():
        raise TableError(f"experiments folder {folder} not found; run from the repository root or pass "
                         "--experiments DIR")
    return [p for p in sorted(folder.glob("*/*.yaml")) if is_table_file(p)]
