"""A run folder owns its contents: :func:`own_run_folder` claims ``--out`` for one run.

While a run lives it holds an exclusive lock on ``RUN/.simxir.lock`` (``flock``: the kernel drops
it when the process dies, so a killed run leaves no stale lock) and ``RUN/run.json`` says who holds
it (command, start time, pid, host). A second run on the folder is refused with one line naming
the holder. A folder that already holds run outputs is refused unless the run resumes it or is
told to ``overwrite`` them; no input of the run may be one of the files the run writes; an empty
``--out`` (an unset shell variable) is refused; temporaries left by an atomic write that was killed
(``.NAME.*.tmp``) are removed. Under torchrun rank 0 (``RANK``) owns the folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from simxir.errors import UserError
from simxir.io import atomic_write_json

LOCK = ".simxir.lock"
MARKER = "run.json"
# what a run writes; any of these in a folder makes it a run folder
OUTPUT_FILES = ("config.yaml", "checkpoint.pt", "metrics.csv", "steps.csv", "encoder.safetensors", "encoder.pt",
                "before.json", "after.json", "results.json", "report.md", "knn_over_k.png", "label-free-before.npz",
                "ablation.json", "ablation.md")
OUTPUT_DIRS = ("tb", "predictor", "linear-before", "linear-after")


def _is_output(name: str) -> bool:
    return name in OUTPUT_FILES or (name.startswith("encoder.") and name.endswith(".pt"))


def run_outputs(folder: Path) -> list[str]:
    """The names of the run outputs in ``folder`` (sorted)."""
    if not folder.is_dir():
        return []
    return sorted(e.name for e in os.scandir(folder)
                  if (e.is_file() and _is_output(e.name)) or (e.is_dir() and e.name in OUTPUT_DIRS))


def _holder(folder: Path) -> str:
    try:
        m = json.loads((folder / MARKER).read_text())
        return f"pid {m.get('pid')} on {m.get('host')} since {m.get('started')} ({' '.join(m.get('command', []))})"
    except (OSError, ValueError):
        return "another process"


@contextlib.contextmanager
def own_run_folder(out: str | Path, *, resume: bool = False, overwrite: bool = False,
                   inputs: Iterable[str | Path] = (), option: str = "--out") -> Iterator[Path]:
    """Claim ``out`` for this run (see the module docstring); yields its Path, releases the lock on exit."""
    if not str(out).strip():
        raise UserError(f"{option}: empty (expected a folder for the run; is a shell variable unset?)")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{option} {folder}: is a file (expected a folder for the run)")
    for inp in inputs:
        p = Path(inp).expanduser()
        if p.exists() and p.parent.resolve() == folder.resolve() and _is_output(p.name):
            raise UserError(f"{option} {folder}: the run would overwrite its input {p}; choose another folder")
    if int(os.environ.get("RANK", "0")) != 0:   # torchrun's other ranks (maybe before the group is up)
        yield folder
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{option} {folder}: cannot create the run folder ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{option} {folder}: in use by another run, {_holder(folder)}; wait for it to end "
                            f"or choose another folder") from None
        existing = run_outputs(folder)
        if existing and not resume:
            if not overwrite:
                raise UserError(f"{option} {folder}: already holds a run ({', '.join(existing[:4])}"
                                f"{', ...' if len(existing) > 4 else ''}); pass --resume to continue it, "
                                f"--overwrite to replace it, or choose another folder")
            for name in existing:
                target = folder / name
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        for e in os.scandir(folder):   # temporaries of atomic writes killed midway (simxir.io)
            if e.is_file() and e.name.startswith(".") and e.name.endswith(".tmp"):
                os.unlink(e.path)
        atomic_write_json({"command": [os.path.basename(sys.argv[0]), *sys.argv[1:]], "pid": os.getpid(),
                           "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           "resumed": bool(resume)}, folder / MARKER)
        yield folder
    finally:
        os.close(fd)
