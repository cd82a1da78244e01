"""Progress on stderr: redrawn tqdm bars on a terminal, one plain line per finished stage in a log
file or pipe (a cluster job's log reads top to bottom), nothing when quiet.

``SIMXIR_PROGRESS=bar|lines|off`` forces a mode; ``SIMXIR_QUIET=1`` is ``off``. Default: ``bar``
when stderr is a terminal, else ``lines``. Training epochs are not repeated in ``lines`` mode: the
engine logs one line per epoch itself.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
MODES = ("bar", "lines", "off")


def quiet() -> bool:
    return os.environ.get("SIMXIR_QUIET", "") not in ("", "0")


def mode() -> str:
    """``bar``, ``lines`` or ``off`` (see the module docstring)."""
    if quiet():
        return "off"
    forced = os.environ.get("SIMXIR_PROGRESS", "").strip().lower()
    if forced in MODES:
        return forced
    return "bar" if sys.stderr.isatty() else "lines"


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False,
             disable: bool | None = None) -> Iterable[T]:
    """``iterable`` with progress on stderr (:func:`mode`); nothing on non-main ranks or with ``disable``."""
    if disable is None:
        disable = int(os.environ.get("RANK", "0")) != 0
    how = "off" if disable else mode()
    if how == "bar":
        return tqdm(iterable, desc=desc, total=total, leave=leave, file=sys.stderr, dynamic_ncols=True)
    if how == "lines" and not desc.startswith("epoch "):
        return _lines(iterable, desc)
    return iterable


def _lines(iterable: Iterable[T], desc: str) -> Iterator[T]:
    """Yield the items, then one line: what finished, how many items, how long it took."""
    start, n = time.perf_counter(), 0
    for item in iterable:
        n += 1
        yield item
    if n:
        log(f"{desc or 'done'}: done in {time.perf_counter() - start:.1f} s ({n} step{'' if n == 1 else 's'})")


def log(msg: str) -> None:
    """A status line on stderr (stdout stays clean for --json)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, file=sys.stderr, flush=True)
