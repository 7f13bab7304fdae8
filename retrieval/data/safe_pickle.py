"""Loading pickles from the internet without letting them run code.

A pickle can call any importable function while it loads. This unpickler resolves only the
few names that rebuild numpy arrays, sets and (protocol <= 2) bytes; plain containers, strings and numbers need no
name at all. After loading, every value is checked: containers, str, bytes, numbers, None and
numeric (bool, integer, float, complex) numpy arrays or scalars are accepted, nothing else.
"""
from __future__ import annotations

import codecs
import io
import os
import pickle

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
    def find_class(self, module: str, name: str):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module, name) not in _ALLOWED:
            raise UnsafePickleError(
                f"it references {module}.{name}, which is not a plain container or numeric array "
                "(loading it could run arbitrary code)"
            )
        if module.startswith("numpy.core."):  # the numpy 2 home of the same function, without the deprecated alias
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def check_plain(value, where: str = "value") -> None:
    """Raise :class:`UnsafePickleError` unless ``value`` is plain data (see the module doc)."""
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (np.ndarray, np.generic)):
        if value.dtype.kind not in _NUMERIC_KINDS:
            raise UnsafePickleError(f"{where} is a numpy value of dtype {value.dtype}, not numeric")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            check_plain(key, f"a key of {where}")
            check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    raise UnsafePickleError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, not plain data")


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
