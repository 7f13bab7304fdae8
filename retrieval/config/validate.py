"""Turning plain YAML data into typed dataclasses, with errors that say where and how to fix."""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import types
import typing
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from retrieval.config import constraints
from retrieval.config.loader import ConfigError
from retrieval.registry import closest

SEQUENCES = (list, tuple, collections.abc.Sequence)
MAPPINGS = (dict, collections.abc.Mapping)


class Where:
    """Names a dotted key and the file:line (or command line) it came from."""

    def __init__(self, sources: dict[str, str]):
        self.sources = sources

    def __call__(self, key: str) -> str:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            source = self.sources.get(".".join(parts[:n]))
            if source:
                return f"{key!r} (set in {source})"
        return f"{key!r} (default)"


def describe(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        rules = [c.accepts for c in tp.__metadata__ if isinstance(c, constraints.Constraint) and c.accepts]
        return " ".join([describe(args[0]), *rules])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else describe(a) for a in args)
    if origin in SEQUENCES:
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin in MAPPINGS:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def coerce(value, tp, key: str, where: Where):
    """``value`` checked against type ``tp`` (ints accepted for floats, lists for tuples)."""
    if tp is Any or tp is inspect.Parameter.empty:
        return value
    origin, args = get_origin(tp), get_args(tp)
    fail = ConfigError(f"{where(key)}: expected {describe(tp)}, got {value!r}")
    if origin is Annotated:
        inner = args[0]
        try:
            value = coerce(value, inner, key, where)
        except constraints.ConstraintError:
            raise
        except ConfigError:
            if get_origin(inner) in (*SEQUENCES, *MAPPINGS) or dataclasses.is_dataclass(inner):
                raise  # names the item or key inside that is wrong
            raise fail from None  # "expected an integer >= 1", not just "an integer"
        constraints.check(value, tp.__metadata__, key, where)
        return value
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise fail
        for option in (a for a in args if a is not type(None)):
            try:
                return coerce(value, option, key, where)
            except constraints.ConstraintError:
                raise  # the type fits, the value does not: say so rather than list the types
            except ConfigError:
                continue
        raise fail
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where(key)}: expected {describe(tp)}, got {value!r}.{closest(value, args)}")
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, key, where)
    if origin in SEQUENCES:
        if not isinstance(value, (list, tuple)):
            raise fail
        item_type = args[0] if args else Any
        items = [coerce(v, item_type, f"{key}.{i}", where) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in MAPPINGS:
        if not isinstance(value, dict):
            raise fail
        value_type = args[1] if args else Any
        return {k: coerce(v, value_type, f"{key}.{k}", where) for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise fail
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise fail


def build_dataclass(cls, data, key: str, where: Where):
    """An instance of dataclass ``cls`` from mapping ``data``; unknown keys are errors."""
    prefix = f"{key}." if key else ""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where(key or '<top level>')}: expected {describe(cls)}, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        name = unknown[0]
        raise ConfigError(f"unknown key {where(prefix + str(name))}; valid keys under "
                          f"{key or 'the top level'}: {', '.join(fields)}.{closest(name, fields)}")
    values = {}
    for name, field in fields.items():
        if name in data:
            values[name] = coerce(data[name], hints[name], prefix + name, where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing key {prefix + name!r}: expected {describe(hints[name])}")
    instance = cls(**values)
    check = getattr(instance, "validate", None)
    if check:
        check(key, where)
    return instance


def check_arguments(factory, args: dict, key: str, where: Where, injected: tuple[str, ...] = ()) -> dict:
    """``args`` checked against ``factory``'s keyword parameters and their annotations.

    ``injected`` parameters are supplied by the engine (e.g. ``num_classes``) and may not be set.
    """
    signature = inspect.signature(factory)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    params = {n: p for n, p in signature.parameters.items()
              if n not in injected and n != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory, include_extras=True)
    except (NameError, TypeError):
        hints = {}
    out = {}
    for name, value in args.items():
        if name not in params:
            if accepts_any:
                out[name] = value
                continue
            valid = ", ".join(params) or "none"
            raise ConfigError(f"unknown argument {where(f'{key}.{name}')} for {getattr(factory, '__name__', factory)}; "
                              f"valid arguments: {valid}.{closest(name, params)}")
        out[name] = coerce(value, hints.get(name, Any), f"{key}.{name}", where)
    missing = [n for n, p in params.items() if p.default is p.empty and n not in args]
    if missing:
        raise ConfigError(f"{where(key)}: missing required argument {missing[0]!r}")
    _check_nested_components(params, hints, out, key, where)
    return out


def _check_nested_components(params: dict, hints: dict, args: dict, key: str, where: Where) -> None:
    """Arguments declared :class:`~retrieval.config.constraints.ArgumentsOf` a sibling-named component
    (e.g. a head's ``pooling_args`` for its ``pooling``) are checked against that component's signature."""
    for name, hint in hints.items():
        nested = [c for c in getattr(hint, "__metadata__", ()) if isinstance(c, constraints.ArgumentsOf)]
        if not nested or name not in params:
            continue
        spec = nested[0]
        component = args.get(spec.name, params[spec.name].default)
        if args.get(name) is not None and component in spec.registry:
            args[name] = check_arguments(spec.registry.get(component), args[name], f"{key}.{name}", where)
