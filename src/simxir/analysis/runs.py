"""What ``simxir analyze`` reads and computes: run folders (``metrics.csv`` + predictor snapshots),
training checkpoints (history + state_dict) and feature files; the figures come from
:mod:`simxir.analysis.plots`."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from simxir.analysis import plots
from simxir.analysis.predictor import (
    as_square_matrix,
    diagnostics_history,
    eigenvalue_trajectories,
    load_predictor_history,
    predictor_diagnostics,
)
from simxir.errors import UserError
from simxir.io import atomic_write_json, load_checkpoint, read_npz, require_file


def load_features(path: str | Path) -> np.ndarray:
    """``features`` (n x d) from an ``.npz`` file (through :func:`simxir.io.read_npz`) or a plain
    ``.npy`` array."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        require_file(path, "an n x d .npy array or an .npz with key 'features' or 'train_features'",
                     "--features")
        try:
            feats = np.load(path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad files
            raise UserError(f"--features {path}: not a readable .npy array ({exc.__class__.__name__})") from None
    else:
        # 'features' (a plain matrix) or the file ``simxir eval --save-features`` writes (its
        # train split's features)
        arrays = read_npz(path, (), ("features", "train_features"), option="--features")
        if not arrays:
            read_npz(path, ("features",), option="--features")   # raises: names the keys found
        feats = arrays.get("features", arrays.get("train_features"))
    if feats.ndim != 2 or not np.issubdtype(feats.dtype, np.number) or np.iscomplexobj(feats):
        raise UserError(f"--features {path}: expected a real n x d array, got {feats.dtype} {tuple(feats.shape)}")
    return feats


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return math.nan


def _epoch(raw: Any, default: int) -> float | int:
    v = _float(raw if raw not in (None, "") else default)
    return int(v) if math.isfinite(v) and v.is_integer() else v


def read_decorrelation_csv(path: Path) -> tuple[list[float | int], list[float]]:
    """``(epochs, values)`` of the ``decorrelation`` column of the engine's ``metrics.csv``."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and "decorrelation" not in rows[0]:
        raise UserError(f"{path}: no 'decorrelation' column (columns: {', '.join(rows[0])})")
    epochs = [_epoch(r.get("epoch"), i + 1) for i, r in enumerate(rows)]
    return epochs, [_float(r["decorrelation"]) for r in rows]


def read_z_dim(path: Path) -> int | None:
    """The width of the embeddings the decorrelation was measured on (``z_dim``; None in older runs)."""
    with path.open(newline="") as f:
        dims = {r.get("z_dim") for r in csv.DictReader(f)} - {None, ""}
    return int(float(dims.pop())) if len(dims) == 1 else None


def _history_curve(history: list[dict[str, Any]]) -> tuple[list[float | int], list[float]]:
    rows = [h for h in history if isinstance(h, dict) and "decorrelation" in h]
    return [_epoch(h.get("epoch"), i + 1) for i, h in enumerate(rows)], [_float(h["decorrelation"]) for h in rows]


def _pick_epochs(epochs: list[int], wanted: list[int] | None, panels: int = 4) -> list[int]:
    if wanted:
        missing = [e for e in wanted if e not in epochs]
        if missing:
            raise UserError(f"--epochs: no predictor snapshot for epoch(s) {missing}; have {epochs}")
        return wanted
    idx = np.unique(np.linspace(0, len(epochs) - 1, min(panels, len(epochs))).round().astype(int))
    return [epochs[i] for i in idx]


def _last_finite(values: list[float]) -> float:
    return values[-1] if values else math.nan


def analyze_run_dir(run_dir: Path, out: Path, heatmap_epochs: list[int] | None = None,
                    max_eig_snapshots: int = 32) -> dict[str, Any]:
    """Plots and numbers of a run folder; the keys of the ``analyze RUN_DIR --json`` object."""
    result: dict[str, Any] = {}
    metrics = run_dir / "metrics.csv"
    predictor_dir = run_dir / "predictor"
    if not metrics.is_file() and not predictor_dir.is_dir():
        raise UserError(f"{run_dir}: not a run folder (expected metrics.csv and/or predictor/epoch_XXXX.npy)")
    plots_made: list[str] = []
    if metrics.is_file():
        epochs, values = read_decorrelation_csv(metrics)
        result["decorrelation"] = _last_finite(values)
        result["decorrelation_curve"] = {"epoch": epochs, "value": values}
        dim = read_z_dim(metrics)
        if dim:
            result["decorrelation_normalized"] = _last_finite([v / (dim * (dim - 1)) for v in values])
        if epochs:
            plots_made.append(str(plots.plot_decorrelation(epochs, values, out / "decorrelation.png",
                                                           title=f"decorrelation: {run_dir.name}", dim=dim)))
    epochs_p, mats = load_predictor_history(run_dir)
    if mats:
        result.update(_predictor_history_result(epochs_p, mats, out, heatmap_epochs, plots_made, max_eig_snapshots))
    result["plots"] = plots_made
    return result


def _predictor_history_result(epochs: list[int], mats: list[np.ndarray], out: Path,
                              heatmap_epochs: list[int] | None, plots_made: list[str],
                              max_eig_snapshots: int = 32) -> dict[str, Any]:
    """Scalar diagnostics for every snapshot; eigenvalues (O(d^3) each: seconds at d = 2048) for at
    most ``max_eig_snapshots`` evenly spaced ones, always including the first and the last."""
    idx = np.unique(np.linspace(0, len(mats) - 1, min(len(mats), max(2, max_eig_snapshots))).round().astype(int))
    eig_epochs = [epochs[i] for i in idx]
    traj = eigenvalue_trajectories([mats[i] for i in idx])
    hist = diagnostics_history(mats)
    res: dict[str, Any] = {key: vals[-1] for key, vals in hist.items()}
    res["eigenvalues"] = traj[-1].tolist()
    res["predictor_epoch"] = epochs[-1]
    res["predictor_history"] = {"epoch": epochs, **hist, "eigenvalue_epoch": eig_epochs,
                                "eigenvalues": traj.tolist()}
    chosen = _pick_epochs(epochs, heatmap_epochs)
    by_epoch = dict(zip(epochs, mats))
    plots_made.append(str(plots.plot_predictor_heatmaps(chosen, [by_epoch[e] for e in chosen],
                                                        out / "predictor_heatmaps.png")))
    if len(epochs) > 1:
        plots_made.append(str(plots.plot_eigenvalue_trajectories(eig_epochs, traj, out / "predictor_eigenvalues.png")))
        plots_made.append(str(plots.plot_predictor_diagnostics(epochs, hist, out / "predictor_diagnostics.png")))
    return res


def predictor_from_state_dict(state: dict[str, Any]) -> np.ndarray | None:
    """The square weight of a linear predictor (a ``...predictor.weight`` key), if the model has one."""
    keys = [k for k, v in state.items() if k.endswith("predictor.weight") and hasattr(v, "ndim")
            and v.ndim == 2 and v.shape[0] == v.shape[1]]
    return as_square_matrix(state[keys[0]]) if len(keys) == 1 else None


def analyze_checkpoint(path: Path, out: Path) -> dict[str, Any]:
    """Decorrelation history and final predictor of a training checkpoint (no data or engine needed)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path}: not a simxir training checkpoint (expected keys 'model' and 'history')")
    result: dict[str, Any] = {}
    plots_made: list[str] = []
    epochs, values = _history_curve(list(ckpt.get("history", [])))
    if epochs:
        result["decorrelation"] = _last_finite(values)
        result["decorrelation_curve"] = {"epoch": epochs, "value": values}
        dims = {h.get("z_dim") for h in ckpt.get("history", []) if isinstance(h, dict)} - {None}
        plots_made.append(str(plots.plot_decorrelation(epochs, values, out / "decorrelation.png",
                                                       title=f"decorrelation: {path.name}",
                                                       dim=int(dims.pop()) if len(dims) == 1 else None)))
    w = predictor_from_state_dict(ckpt["model"]) if isinstance(ckpt["model"], dict) else None
    if w is not None:
        result.update(predictor_diagnostics(w))
        epoch = int(ckpt.get("epoch", 0))
        result["predictor_epoch"] = epoch
        plots_made.append(str(plots.plot_predictor_heatmaps([epoch], [w], out / "predictor_heatmaps.png")))
    result["plots"] = plots_made
    return result


def analyze_path(path: Path, out: Path | None, heatmap_epochs: list[int] | None = None,
                 max_eig_snapshots: int = 32) -> tuple[dict[str, Any], Path]:
    """``(result, folder)``: a run folder's or checkpoint file's analysis, also written with its plots
    to ``out`` (default: ``RUN_DIR/analysis``, or ``analysis/`` beside the checkpoint)."""
    if path.is_dir():
        out_dir = out or path / "analysis"
        result = analyze_run_dir(path, out_dir, heatmap_epochs, max_eig_snapshots)
    elif path.is_file():
        out_dir = out or path.parent / "analysis"
        result = analyze_checkpoint(path, out_dir)
    else:
        raise UserError(f"{path}: no such run folder or checkpoint file")
    atomic_write_json(result, out_dir / "analysis.json")
    return result, out_dir
