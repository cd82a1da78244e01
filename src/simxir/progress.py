"""Progress bars on stderr (tqdm), off when SIMXIR_QUIET=1."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("SIMXIR_QUIET", "") not in ("", "0")


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, leave: bool = False,
             disable: bool | None = None) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr; disabled when quiet or on non-main ranks."""
    if disable is None:
        disable = quiet() or int(os.environ.get("RANK", "0")) != 0
    return tqdm(iterable, desc=desc, total=total, leave=leave, file=sys.stderr, disable=disable,
                dynamic_ncols=True)


def log(msg: str) -> None:
    """A status line on stderr (stdout stays clean for --json)."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(msg, file=sys.stderr, flush=True)
