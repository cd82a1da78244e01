"""A restricted unpickler for the CIFAR python batches: numpy arrays and builtin containers only.

The CIFAR files are pickles of dicts holding numpy arrays, lists, ints and byte strings. Only
the globals needed to rebuild those are admitted, so a crafted pickle cannot import ``os`` or
call anything else: such a file is refused with a ``UserError``.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import IO, Any

from simxir.errors import UserError

# (module, name) pairs a CIFAR batch may reference, as written by Python 2 cPickle or Python 3.
_ALLOWED: dict[tuple[str, str], tuple[str, str]] = {}
for _core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_core}.multiarray", "_reconstruct")] = ("numpy._core.multiarray", "_reconstruct")
    _ALLOWED[(f"{_core}.multiarray", "scalar")] = ("numpy._core.multiarray", "scalar")
    _ALLOWED[(f"{_core}.numeric", "_frombuffer")] = ("numpy._core.numeric", "_frombuffer")
_ALLOWED[("numpy", "ndarray")] = ("numpy", "ndarray")
_ALLOWED[("numpy", "dtype")] = ("numpy", "dtype")
_ALLOWED[("_codecs", "encode")] = ("_codecs", "encode")  # bytes pickled by Python 3 at protocol < 3
for _mod in ("builtins", "__builtin__"):
    for _name in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float"):
        _ALLOWED[(_mod, _name)] = ("builtins", _name)


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only the whitelisted globals."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
        return getattr(importlib.import_module(target[0]), target[1])


def safe_load(f: IO[bytes], where: str) -> Any:
    """Unpickle ``f`` (keys as bytes, like the real files) with the restricted unpickler."""
    try:
        return RestrictedUnpickler(f, encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise UserError(f"{where}: refused to unpickle ({exc}); only numpy arrays and builtin "
                        f"containers are accepted in CIFAR batches") from None
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt files raise many types
        raise UserError(f"{where}: not a readable CIFAR pickle batch ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def safe_loads(data: bytes, where: str) -> Any:
    return safe_load(io.BytesIO(data), where)
