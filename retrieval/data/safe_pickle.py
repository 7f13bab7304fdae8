"""Loading pickles from the internet without letting them run code.

A pickle can call any importable function while it loads. This unpickler resolves only the
few names that rebuild numpy arrays, sets and (protocol <= 2) bytes; plain containers, strings and numbers need no
name at all. After loading, every value is checked: containers, str, bytes, numbers, None and
numeric (bool, integer, float, complex) numpy arrays or scalars are accepted, nothing else.

The check bounds its work, since a few hundred bytes of pickle can describe a huge object graph: every
object is visited once however often it is shared (a list nested 40 levels deep in itself, each level
holding the one below twice, is 40 objects, not 2^40 paths), a reference cycle is refused, and so are
values nested deeper than :data:`MAX_DEPTH` or made of more than :data:`MAX_OBJECTS` objects.
"""
from __future__ import annotations

import codecs
import io
import os
import pickle
import types

import numpy as np

# (module, name) a pickle of plain data may reference; numpy < 2 wrote ``numpy.core``, numpy 2 ``numpy._core``;
# protocols < 3 call the builtins module ``__builtin__``.
_NUMPY_NAMES = {"multiarray": ("_reconstruct", "scalar"), "numeric": ("_frombuffer",)}
_BUILTINS = ("set", "frozenset", "complex", "bytes", "bytearray")
_ALLOWED = (
    {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}
    | {(module, name) for module in ("builtins", "__builtin__") for name in _BUILTINS}
    | {(f"{package}.{module}", name) for package in ("numpy.core", "numpy._core")
       for module, names in _NUMPY_NAMES.items() for name in names}
)

_PLAIN = (str, bytes, bytearray, int, float, complex, bool, type(None))
_NUMERIC_KINDS = "biufc"


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle that references something other than plain data."""


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 pickles of protocol <= 2 call to rebuild bytes (``_codecs.encode(text, 'latin1')``)."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"it calls _codecs.encode with encoding {encoding!r}, not the latin1 of bytes")
    return codecs.encode(text, encoding)


class RestrictedUnpickler(pickle.Unpickler):
    #: Further ``(module, name) -> object`` this unpickler resolves (see :func:`load_torch`).
    extra_names: dict[tuple[str, str], object] = {}

    def find_class(self, module: str, name: str):
        if (module, name) in self.extra_names:
            return self.extra_names[(module, name)]
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"it references {module}.{name}, which is not a plain container, numeric array or tensor "
                "(loading it could run arbitrary code)"
            )
        if module.startswith("numpy.core."):  # the numpy 2 home of the same function, without the deprecated alias
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


#: Deepest nesting accepted: dataset ground truths and checkpoints are a few levels deep.
MAX_DEPTH = 32
#: Most distinct objects accepted in one pickle (R1M's image list is about a million strings).
MAX_OBJECTS = 20_000_000


def check_plain(value, where: str = "value", leaf_types: tuple[type, ...] = (), max_depth: int = MAX_DEPTH,
                max_objects: int = MAX_OBJECTS) -> None:
    """Raise :class:`UnsafePickleError` unless ``value`` is plain data (see the module doc).

    ``leaf_types``: further types accepted as they are (a torch file's tensors). Each object is
    checked once (work linear in the number of distinct objects); a cycle, nesting deeper than
    ``max_depth`` or more than ``max_objects`` objects is refused, naming where.
    """
    height: dict[int, int] = {}  # checked containers: the longest chain of containers below them
    open_ids: set[int] = set()  # the containers on the current path, to find cycles
    # Depth-first without recursion: (value, depth, path) to enter; (container, None, path) to leave.
    stack: list = [(value, 0, (where,))]
    while stack:
        item, depth, path = stack.pop()
        if depth is None:
            open_ids.discard(id(item))
            height[id(item)] = 1 + max((height.get(id(child), 0) for child in _children(item)), default=0)
            if height[id(item)] > max_depth:  # a shared container can make a chain longer than any one path
                raise UnsafePickleError(f"{_path(path)} nests deeper than {max_depth} levels")
            continue
        if isinstance(item, _PLAIN) or (leaf_types and isinstance(item, leaf_types)):
            continue
        if isinstance(item, (np.ndarray, np.generic)):
            if item.dtype.kind not in _NUMERIC_KINDS:
                raise UnsafePickleError(f"{_path(path)} is a numpy value of dtype {item.dtype}, not numeric")
            continue
        if not isinstance(item, (dict, list, tuple, set, frozenset)):
            raise UnsafePickleError(f"{_path(path)} is a {type(item).__module__}.{type(item).__qualname__}, "
                                    "not plain data")
        if id(item) in open_ids:
            raise UnsafePickleError(f"{_path(path)} contains itself (a reference cycle), which plain data cannot")
        if id(item) in height:
            continue
        if depth >= max_depth:
            raise UnsafePickleError(f"{_path(path)} nests deeper than {max_depth} levels")
        if len(height) + len(open_ids) >= max_objects:
            raise UnsafePickleError(f"it holds more than {max_objects} containers")
        open_ids.add(id(item))
        stack.append((item, None, path))
        for index, child in (item.items() if isinstance(item, dict) else enumerate(item)):
            if isinstance(item, dict):
                stack.append((index, depth + 1, (path, "key", index)))
            stack.append((child, depth + 1, (path, "", index)))


def _children(container) -> list:
    return [*container.keys(), *container.values()] if isinstance(container, dict) else list(container)


def _path(path: tuple) -> str:
    """``value[0]['gnd']`` from the linked (parent, kind, index) tuples the check builds lazily."""
    parts = []
    while len(path) == 3:
        path, kind, index = path
        parts.append(f"[{index!r}]" if not kind else f" (a key: {index!r})")
    return path[0] + "".join(reversed(parts))


def loads(data: bytes, source: str = "pickle"):
    """The plain data in ``data``; :class:`UnsafePickleError` (naming ``source``) for anything else."""
    try:
        value = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        check_plain(value)
    except UnsafePickleError as error:
        raise UnsafePickleError(f"refusing to load {source}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise pickle.UnpicklingError(f"{source} is not a valid pickle ({type(error).__name__}: {error})") from None
    return value


def load(path: str | os.PathLike):
    """The plain data in the pickle file at ``path`` (see :func:`loads`)."""
    with open(path, "rb") as handle:
        return loads(handle.read(), source=str(path))


#: What a torch file of tensors references besides plain data (the storage types torch resolves itself).
TORCH_NAMES = ("_rebuild_tensor_v2", "_rebuild_parameter")


def load_torch(path: str | os.PathLike, names: dict[tuple[str, str], object] | None = None):
    """The content of the torch file at ``path`` (zip or legacy format), loaded without running code.

    Only tensors, plain data and the ``names`` given (``(module, name) -> stand-in``, e.g. a class
    that keeps a pickled estimator's state as a dict) are rebuilt; anything else is refused with
    :class:`UnsafePickleError` naming the file and what it references, before it is called. Tensors
    are loaded on the CPU.
    """
    import torch

    allowed = {("torch._utils", name): getattr(torch._utils, name) for name in TORCH_NAMES} | dict(names or {})
    unpickler = type("TorchFileUnpickler", (RestrictedUnpickler,), {"extra_names": allowed})
    # torch.load reads the legacy format's header with ``pickle_module.load`` and the rest with its Unpickler.
    module = types.SimpleNamespace(__name__=__name__, Unpickler=unpickler,
                                   load=lambda handle, **kwargs: unpickler(handle, **kwargs).load())
    try:
        value = torch.load(path, map_location="cpu", pickle_module=module, weights_only=False)
        check_plain(value, leaf_types=(torch.Tensor,))
    except UnsafePickleError as error:
        raise UnsafePickleError(f"refusing to load {path}: {error}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RuntimeError) as error:
        raise pickle.UnpicklingError(f"{path} is not a valid torch file ({type(error).__name__}: {error})") from None
    return value
