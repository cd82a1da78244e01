"""Run logs: ``metrics.csv`` (one row per epoch), ``steps.csv`` (every ``log_every`` steps), and the
trackers ``logging.backends`` names (:class:`Trackers`): TensorBoard events (when ``tensorboard`` is
importable; otherwise one line says so), a W&B run, an MLflow run (the same metrics, config and
final results in each).

The CSV files are rewritten atomically from the history held in the checkpoint, so a resumed run's
logs never hold rows of the part that was lost.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import os
import uuid
from pathlib import Path
from typing import Any

from simxir.config import flatten
from simxir.errors import UserError
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
        for k, v in _numbers(values).items():
            self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def _need(module: str, extra: str) -> Any:
    """The optional tracker package ``module``, imported only when a run asks for it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"logging.backends {extra}: the {module} package is not installed; "
                        f"pip install 'simxir[{extra}]'") from None


def check_backends(backends: list[str]) -> None:
    """A requested tracker whose package is missing is one line before anything is written."""
    for name in ("wandb", "mlflow"):
        if name in backends:
            _need(name, name)


class Trackers:
    """The run's trackers besides the CSV files: TensorBoard, W&B and MLflow as ``backends`` says
    (rank 0 only: ``enabled``). ``scalars(prefix, values, step)`` logs; ``close(final)`` records the
    final results and ends the runs. A resumed run continues the same W&B / MLflow run."""

    def __init__(self, run_dir: Path, backends: list[str], config: dict[str, Any], project: str = "simxir",
                 wandb_mode: str = "", enabled: bool = True, tensorboard: bool = True,
                 purge_step: int | None = None):
        self.tb = TensorBoard(run_dir / "tb", enabled and tensorboard and "tensorboard" in backends, purge_step)
        self.wandb = self.mlflow = None
        if not enabled:
            return
        if "wandb" in backends:
            wandb = _need("wandb", "wandb")
            id_file = run_dir / "wandb-run-id.txt"
            run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:12]
            atomic_write_bytes(id_file, run_id.encode())
            self.wandb = wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                                    config=config, mode=wandb_mode or None, reinit="finish_previous")
        if "mlflow" in backends:
            mlflow = _need("mlflow", "mlflow")
            if not os.environ.get("MLFLOW_TRACKING_URI"):     # the run folder's own local file store
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
            mlflow.set_experiment(project)
            id_file = run_dir / "mlflow-run-id.txt"
            resumed = id_file.is_file()
            run = mlflow.start_run(run_id=id_file.read_text().strip() if resumed else None, run_name=run_dir.name)
            atomic_write_bytes(id_file, run.info.run_id.encode())
            if not resumed:       # parameters are written once (MLflow refuses to change them)
                mlflow.log_params({k: str(v)[:500] for k, v in flatten(config).items()})
            self.mlflow = mlflow

    def scalars(self, prefix: str, values: dict[str, Any], step: int) -> None:
        self.tb.scalars(prefix, values, step)
        nums = {f"{prefix}/{k}": v for k, v in _numbers(values).items()}
        if self.wandb is not None and nums:
            self.wandb.log({**nums, "global_step": step})
        if self.mlflow is not None and nums:
            self.mlflow.log_metrics({k.replace("/", "."): v for k, v in nums.items()}, step=step)

    def close(self, final: dict[str, Any] | None = None) -> None:
        self.tb.close()
        nums = _numbers(final or {})
        if self.wandb is not None:
            self.wandb.summary.update(nums)
            self.wandb.finish()
            self.wandb = None
        if self.mlflow is not None:
            if nums:
                self.mlflow.log_metrics({f"final.{k}": v for k, v in nums.items()})
            self.mlflow.end_run()
            self.mlflow = None
