"""Atomic file writes and safe checkpoint loading."""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import signal
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from safetensors import safe_open

from simxir.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def sigint_deferred() -> Iterator[None]:
    """Ctrl-C waits until the block is done, then raises KeyboardInterrupt: a checkpoint being written
    is finished (torch's writer turns an interrupt midway into an unrelated RuntimeError). Only in
    the main thread, where Python delivers signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


@contextlib.contextmanager
def _atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only once fully written (temp file in the same
    folder, fsync, ``os.replace``); on error the old file stays and the temp file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the mode open() would
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):   # name the file being written, not the temporary
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise


def require_file(path: str | Path, expected: str, option: str = "", noun: str = "file") -> Path:
    """``path`` as a Path when it is a file; else a one-line UserError that says whether it is
    missing or a directory, naming ``option`` (e.g. ``--features``) and what was ``expected``."""
    p = Path(path).expanduser()
    who = f"{option} {p}" if option else str(p)
    if p.is_dir():
        raise UserError(f"{who}: is a directory (expected {expected})")
    if not p.is_file():
        raise UserError(f"{who}: no such {noun} (expected {expected})")
    return p


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` made atomic: a temp file in the same folder, fsync, then ``os.replace``; a
    Ctrl-C meanwhile takes effect once the file is complete (:func:`sigint_deferred`)."""
    with sigint_deferred(), _atomic_file(path) as f:
        torch.save(obj, f)


def to_python(value: Any, finite_only: bool = False) -> Any:
    """A copy of ``value`` in plain Python, recursively: numpy and one-element tensor scalars become
    numbers, tuples lists, mapping keys strings (what ``weights_only`` checkpoints and JSON hold);
    ``finite_only``: nan/inf become None (null), as strict JSON needs."""
    if isinstance(value, dict):
        return {str(k): to_python(v, finite_only) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v, finite_only) for v in value]
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        value = value.item()
    if finite_only and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can hold: nan/inf become None (null)."""
    return to_python(value, finite_only=True)


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented, strict JSON (nan/inf as null), atomically."""
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2) + "\n").encode())


def read_npz(path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = (),
             option: str = "") -> dict[str, np.ndarray]:
    """The ``required`` (and present ``optional``) arrays of an ``.npz``, loaded without pickle.

    Errors are one line naming ``option`` (e.g. ``--features``), the path and the keys expected:
    a missing file, missing keys, a file that is not an .npz, or object arrays.
    """
    p = Path(path).expanduser()
    who = f"{option} {p}" if option else str(p)
    expected = (", ".join(required) + (f" (optional {', '.join(optional)})" if optional else "")
                if required else "one of " + ", ".join(optional))
    require_file(p, f"an .npz with keys {expected}", option)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in required if k not in z.files]
            if missing:
                raise UserError(f"{who}: missing key(s) {', '.join(missing)} (expected {expected}; "
                                f"found {', '.join(z.files) or 'none'})")
            return {k: z[k] for k in (*required, *optional) if k in z.files}
    except UserError:
        raise
    except ValueError as exc:
        what = ("pickled or object data, which is never unpickled" if "pickle" in str(exc).lower()
                and zipfile.is_zipfile(p) else "not a zip archive of .npy arrays")
        raise UserError(f"{who}: not a readable .npz of numeric arrays ({what})") from None
    except Exception as exc:  # noqa: BLE001 - zipfile, OS and EOF errors for damaged files
        raise UserError(f"{who}: not a readable .npz of numeric arrays ({exc.__class__.__name__})") from None


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and metadata of a safetensors file (on the CPU); one line when it is not one."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}  # noqa: SIM118
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(path: str | Path, allow_pickle: bool = False) -> Any:
    """Load a torch checkpoint with ``weights_only=True``.

    A file that needs arbitrary unpickling (torch's weights-only unpickler refuses a global, an
    opcode or a pickle protocol) is refused with a message naming ``--allow-pickle``; with
    ``allow_pickle=True`` (the user trusts the file) it is loaded fully.
    """
    path = require_file(path, "a file written by torch.save, or a .safetensors file", noun="checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc).lower()
        if not _torch_format(path) or ("weights only load failed" not in text
                                       and "unsupported global" not in text):
            raise _unreadable(path, exc) from None
        if not allow_pickle:
            raise UserError(
                f"{path}: checkpoint holds Python objects beyond tensors and cannot be loaded with "
                f"weights_only=True; if you trust this file, pass --allow-pickle"
            ) from None
    except Exception as exc:  # noqa: BLE001 - torch raises several types for damaged files
        raise _unreadable(path, exc) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a class the trusted pickle names is not importable
        raise _unreadable(path, exc) from None


def _torch_format(path: Path) -> bool:
    """Whether the file is in torch.save's format: a zip archive, or the legacy pickle that starts
    with torch's magic number (anything else is no checkpoint, whatever the unpickler says)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(4) == b"\x80\x02\x8a\x0a"


def _unreadable(path: Path, exc: Exception) -> UserError:
    return UserError(f"{path}: not a readable torch checkpoint (expected a file written by torch.save, "
                     f"or a .safetensors file; torch said {exc.__class__.__name__})")
