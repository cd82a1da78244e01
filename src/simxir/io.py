"""Atomic file writes and safe checkpoint loading."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch

from simxir.errors import UserError


_UMASK = os.umask(0)
os.umask(_UMASK)


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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old or the new file, never half."""
    with _atomic_file(path) as f:
        f.write(data)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` made atomic: a temp file in the same folder, fsync, then ``os.replace``."""
    with _atomic_file(path) as f:
        torch.save(obj, f)


def json_safe(value: Any) -> Any:
    """A copy of ``value`` that strict JSON can hold: nan/inf become None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def atomic_write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as indented, strict JSON (nan/inf as null), atomically."""
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=2) + "\n").encode())


def load_checkpoint(path: str | Path, allow_pickle: bool = False) -> Any:
    """Load a torch checkpoint with ``weights_only=True``.

    A file that needs arbitrary unpickling is refused with a message naming ``--allow-pickle``;
    with ``allow_pickle=True`` (the user trusts the file) it is loaded fully.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types here
        text = str(exc)
        if "Unsupported global" in text:
            if allow_pickle:
                return torch.load(path, map_location="cpu", weights_only=False)
            raise UserError(
                f"{path}: checkpoint holds Python objects beyond tensors and cannot be loaded with "
                f"weights_only=True; if you trust this file, pass --allow-pickle"
            ) from None
        raise UserError(
            f"{path}: not a readable torch checkpoint (expected a file written by torch.save, "
            f"or a .safetensors file; torch said {exc.__class__.__name__})"
        ) from None
