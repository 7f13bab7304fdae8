"""Name -> factory registries, so a config can name a loss, a dataset or a backbone.

Adding a component is one module plus one ``@REGISTRY.register("name")`` line.
"""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Callable)


def closest(name: str, choices) -> str:
    """A ``did you mean`` suffix for error messages, or '' when nothing is close."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean {match[0]!r}?" if match else ""


class Registry(Generic[T]):
    """Factories by name: ``@R.register("name")`` adds one, ``R.get(name)`` returns it, ``R.build(name, **args)``
    calls it; an unknown name is a KeyError listing the known ones and the closest."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(factory: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = factory
            return factory

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(
                f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self._items))}."
                + closest(name, self._items)
            ) from None

    def build(self, name: str, **kwargs):
        return self.get(name)(**kwargs)

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
