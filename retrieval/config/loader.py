"""YAML files with ``_base_`` inheritance and dotted overrides, remembering where each key was set."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

BASE_KEY = "_base_"
COMMAND_LINE = "the command line"
PLAIN_COLLECTION_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class ConfigLoader(yaml.SafeLoader):
    """Safe YAML loading that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+"
               r"|\.[0-9_]+(?:[eE][-+]?[0-9]+)?|\.(?:inf|Inf|INF)|[-+]\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def yaml_value(text: str):
    return yaml.load(text, Loader=ConfigLoader)


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key, where it was set and a fix."""


def _read_yaml(path: Path) -> tuple[dict, dict[str, str]]:
    """The mapping in ``path`` and, for every dotted key in it, ``"file:line"``."""
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    loader = ConfigLoader(text)
    try:
        node = loader.get_single_node()
        sources: dict[str, str] = {}

        def convert(node, prefix: str):
            # construct_object refuses unsafe tags on scalars; mappings and lists are built here, so check theirs.
            if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in PLAIN_COLLECTION_TAGS:
                raise ConfigError(f"{path}:{node.start_mark.line + 1}: the tag {node.tag!r} is not allowed in a "
                                  "config; write plain YAML mappings, lists and values")
            if isinstance(node, yaml.MappingNode):
                out = {}
                for key_node, value_node in node.value:
                    key = loader.construct_object(key_node)
                    sources[prefix + str(key)] = f"{path}:{key_node.start_mark.line + 1}"
                    out[key] = convert(value_node, f"{prefix}{key}.")
                return out
            if isinstance(node, yaml.SequenceNode):
                return [convert(item, f"{prefix}{i}.") for i, item in enumerate(node.value)]
            return loader.construct_object(node, deep=True)

        data = {} if node is None else convert(node, "")
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(data).__name__}")
    return data, sources


def merge(base: dict, override: dict) -> dict:
    """``override`` deep-merged onto ``base``.

    A mapping whose ``name`` differs from the base's replaces it whole (arguments of one
    component never leak into another); lists and scalars replace; ``null`` replaces too,
    which is how a derived config removes an inherited entry (e.g. a loss term).
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        old = out.get(key)
        same_component = not (isinstance(value, dict) and "name" in value and isinstance(old, dict)
                              and old.get("name") != value["name"])
        if isinstance(value, dict) and isinstance(old, dict) and same_component:
            out[key] = merge(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml_tree(path: str | Path, _stack: tuple[Path, ...] = ()) -> tuple[dict, dict[str, str]]:
    """The merged mapping of ``path`` and its ``_base_`` ancestors, with key sources."""
    path = Path(path).resolve()
    if path in _stack:
        cycle = " -> ".join(str(p) for p in (*_stack, path))
        raise ConfigError(f"circular _base_ inheritance: {cycle}")
    data, sources = _read_yaml(path)
    bases = data.pop(BASE_KEY, [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{sources.get(BASE_KEY, path)}: _base_ must be a path or a list of paths")
    merged, merged_sources = {}, {}
    for base in bases:
        base_path = path.parent / base
        if not base_path.is_file():
            raise ConfigError(f"{sources[BASE_KEY]}: _base_ file {base!r} not found (looked for {base_path})")
        base_data, base_sources = load_yaml_tree(base_path, (*_stack, path))
        merged = merge(merged, base_data)
        merged_sources.update(base_sources)
    merged_sources.update({k: v for k, v in sources.items() if k != BASE_KEY})
    return merge(merged, data), merged_sources


def parse_overrides(overrides) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings (values parsed as YAML: ``3``, ``1e-4``, ``[1, 2]``, ``null``)
    or a mapping of dotted keys to values, as ``(key, value)`` pairs."""
    if isinstance(overrides, dict):
        return list(overrides.items())
    pairs = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} (on {COMMAND_LINE}) is not of the form key.sub=value")
        if "" in key.split("."):
            raise ConfigError(f"override {item!r} (on {COMMAND_LINE}): the key {key!r} has an empty part; "
                              "write dotted keys like train.epochs=3")
        try:
            pairs.append((key, yaml_value(raw)))
        except yaml.YAMLError as error:
            raise ConfigError(f"override {item!r}: value is not valid YAML: {error}") from None
    return pairs


def apply_overrides(data: dict, sources: dict[str, str], overrides, source: str = COMMAND_LINE) -> dict:
    """Apply dotted-key overrides (see :func:`parse_overrides`) on top of ``data``."""
    for key, value in parse_overrides(overrides):
        item = f"{key}={value!r}"
        *parents, leaf = key.split(".")
        node = data
        for depth, part in enumerate(parents):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parents[: depth + 1])} is not a mapping")
            node = child
        node[leaf] = merge({leaf: node.get(leaf)}, {leaf: value})[leaf]
        # keys the override replaced are gone (a component renamed drops its old arguments); keys it set are its own
        present = set(dotted_keys(node[leaf], key))
        for stale in [k for k in sources if k.startswith(key + ".") and k not in present]:
            del sources[stale]
        sources.update({k: source for k in (key, *dotted_keys(value, key))})
    return data


def dotted_keys(value, prefix: str):
    """Every dotted key inside ``value`` (mappings and lists), each prefixed with ``prefix``."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for name, item in items:
        yield f"{prefix}.{name}"
        yield from dotted_keys(item, f"{prefix}.{name}")
