"""Run logs: ``metrics.csv`` (one row per epoch), ``steps.csv`` (every ``log_every`` steps) and
TensorBoard events (when ``tensorboard`` is importable; otherwise one line says so).

The CSV files are rewritten atomically from the history held in the checkpoint, so a resumed run's
logs never hold rows of the part that was lost.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from simxir.io import atomic_write_bytes
from simxir.progress import log


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else repr(v)
    return v


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``rows`` (dicts, keys in first-seen order) as a CSV file, atomically."""
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in keys and not isinstance(v, (dict, list)):
                keys.append(k)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k, "")) for k in keys})
    atomic_write_bytes(path, buf.getvalue().encode())


class TensorBoard:
    """A SummaryWriter when tensorboard is importable and ``enabled``; otherwise does nothing."""

    def __init__(self, log_dir: Path, enabled: bool, purge_step: int | None = None):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: PLC0415 - optional dependency
        except Exception as exc:  # noqa: BLE001 - tensorboard missing or broken: logs stay CSV only
            log(f"tensorboard: not written ({exc.__class__.__name__}: tensorboard is not importable; "
                f"pip install 'simxir[tensorboard]' or pass tensorboard=false); logs are CSV only "
                f"(metrics.csv, steps.csv)")
            return
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for k, v in values.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
