"""Declarative constraints on config values, attached to a type with ``typing.Annotated``.

A schema field or a component's keyword argument declares what it accepts where it is defined,
e.g. ``lr: Annotated[float, Range(gt=0)]`` or ``pooling: Annotated[str, OneOf(POOLINGS)]``; the
validator (:func:`retrieval.config.validate.coerce`) checks every such value with the rest of the
config, before anything runs or is written, and names the key, where it was set and what is accepted.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from retrieval.config.loader import ConfigError
from retrieval.registry import closest


class ConstraintError(ConfigError):
    """A value of the right type outside what its key accepts."""


class Constraint(ABC):
    """``problem(value)`` is None when ``value`` is accepted, else why not; ``accepts`` describes the rule."""

    accepts = ""

    @abstractmethod
    def problem(self, value) -> str | None:
        """Why ``value`` is not accepted, or None."""


@dataclass(frozen=True)
class Range(Constraint):
    """A number within bounds: ``ge``/``gt`` below, ``le`` above. NaN is never within bounds."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None

    @property
    def accepts(self) -> str:
        parts = [f">= {self.ge:g}" if self.ge is not None else "", f"> {self.gt:g}" if self.gt is not None else "",
                 f"<= {self.le:g}" if self.le is not None else ""]
        return " and ".join(p for p in parts if p)

    def problem(self, value) -> str | None:
        inside = not (isinstance(value, float) and math.isnan(value))
        inside = inside and (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        inside = inside and (self.le is None or value <= self.le)
        return None if inside else f"must be {self.accepts}, got {value!r}"


@dataclass(frozen=True)
class NonEmpty(Constraint):
    """A list or mapping with at least one item."""

    accepts = "(not empty)"

    def problem(self, value) -> str | None:
        return None if len(value) else f"must not be empty, got {value!r}"


@dataclass(frozen=True)
class OneOf(Constraint):
    """A name registered in ``registry`` (a :class:`retrieval.registry.Registry`), looked up when checked."""

    registry: Any

    @property
    def accepts(self) -> str:
        return f"naming a registered {self.registry.kind}"

    def problem(self, value) -> str | None:
        if value in self.registry:
            return None
        names = self.registry.names()
        return f"unknown {self.registry.kind} {value!r}; known: {', '.join(names)}.{closest(value, names)}"


@dataclass(frozen=True)
class ArgumentsOf(Constraint):
    """Keyword arguments for the component that the sibling argument ``name`` picks from ``registry``.

    Checked by :func:`retrieval.config.validate.check_arguments` once the sibling is known.
    """

    name: str
    registry: Any

    def problem(self, value) -> str | None:
        return None


@dataclass(frozen=True)
class DeviceName(Constraint):
    """``auto``, or a torch device this machine has (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""

    names = "'auto', 'cpu', or 'cuda', 'cuda:N', 'mps' where the machine has that device"
    accepts = f"naming {names}"

    def problem(self, value) -> str | None:
        import torch

        if value == "auto":
            return None
        try:
            device = torch.device(value)
        except RuntimeError:
            return f"{value!r} is not a device name; accepted: {self.names}"
        if device.type == "cuda":
            if not torch.cuda.is_available():
                return f"{value!r}: CUDA is not available on this machine; accepted here: 'auto' or 'cpu'"
            count = torch.cuda.device_count()
            if device.index is not None and device.index >= count:
                return f"{value!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
        elif device.type == "mps" and not torch.backends.mps.is_available():
            return f"{value!r}: MPS is not available on this machine; accepted here: 'auto' or 'cpu'"
        elif device.type not in ("cpu", "cuda", "mps"):
            return f"device type {device.type!r} is not supported; accepted: {self.names}"
        return None


def check(value, metadata, key: str, where) -> None:
    """Raise :class:`ConstraintError` naming ``key`` when ``value`` breaks one of the constraints in ``metadata``."""
    for constraint in metadata:
        if isinstance(constraint, Constraint) and value is not None:
            problem = constraint.problem(value)
            if problem:
                raise ConstraintError(f"{where(key)}: {problem}")
