"""``simxir analyze`` (run folders, checkpoints, feature files, predictor matrices) and
``simxir theorem31`` (the Theorem 3.1 simulation).

``simxir analyze PATH`` takes a run folder (``metrics.csv`` + ``predictor/epoch_XXXX.npy``) or a
training checkpoint (``checkpoint.pt``: per-epoch history + the method's state_dict); ``--features``
takes an ``.npz`` with key ``features`` (n x d) and ``--predictor`` a ``.npy`` d x d matrix. Several
inputs may be combined; the ``--json`` object holds only the keys that apply.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import typer

from simxir.analysis.decorrelation import decorrelation
from simxir.analysis.predictor import (
    as_square_matrix,
    diagnostics_history,
    eigenvalue_trajectories,
    load_predictor,
    load_predictor_history,
    predictor_diagnostics,
)
from simxir.errors import UserError
from simxir.io import atomic_write_json, read_npz, require_file
from simxir.progress import log


def json_safe(obj: Any) -> Any:
    """Replace nan/inf floats by None (strict JSON) throughout nested dicts/lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return json_safe(obj.item())
    return obj


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
    from simxir.analysis import plots

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
        if epochs:
            plots_made.append(str(plots.plot_decorrelation(epochs, values, out / "decorrelation.png",
                                                           title=f"decorrelation: {run_dir.name}")))
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
    from simxir.analysis import plots

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
    from simxir.analysis import plots
    from simxir.io import load_checkpoint

    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise UserError(f"{path}: not a simxir training checkpoint (expected keys 'model' and 'history')")
    result: dict[str, Any] = {}
    plots_made: list[str] = []
    epochs, values = _history_curve(list(ckpt.get("history", [])))
    if epochs:
        result["decorrelation"] = _last_finite(values)
        result["decorrelation_curve"] = {"epoch": epochs, "value": values}
        plots_made.append(str(plots.plot_decorrelation(epochs, values, out / "decorrelation.png",
                                                       title=f"decorrelation: {path.name}")))
    w = predictor_from_state_dict(ckpt["model"]) if isinstance(ckpt["model"], dict) else None
    if w is not None:
        result.update(predictor_diagnostics(w))
        epoch = int(ckpt.get("epoch", 0))
        result["predictor_epoch"] = epoch
        plots_made.append(str(plots.plot_predictor_heatmaps([epoch], [w], out / "predictor_heatmaps.png")))
    result["plots"] = plots_made
    return result


def _parse_epochs(raw: str | None) -> list[int] | None:
    if not raw:
        return None
    try:
        return [int(x) for x in raw.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"--epochs: expected comma-separated epoch numbers, got {raw!r}") from None


def analyze_command(
    path: Path = typer.Argument(None, help="run folder (metrics.csv, predictor/) or training checkpoint .pt"),
    features: Path = typer.Option(None, "--features", help=".npz with key 'features' (n x d)"),
    predictor: Path = typer.Option(None, "--predictor", help=".npy with a d x d linear predictor"),
    out: Path = typer.Option(None, "--out", help="folder for plots and analysis.json (default: RUN_DIR/analysis)"),
    epochs: str = typer.Option(None, "--epochs", help="predictor heat-map epochs, e.g. 1,50,100"),
    zero_variance: str = typer.Option("nan", "--zero-variance", help="constant feature dims: nan | drop"),
    max_eig_snapshots: int = typer.Option(32, "--max-eig-snapshots",
                                          help="eigen-decompose at most this many predictor snapshots"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Decorrelation and linear-predictor diagnostics of a run, a checkpoint, features or a matrix."""
    if path is None and features is None and predictor is None:
        raise UserError("analyze: give a run folder/checkpoint PATH, --features FILE.npz or --predictor W.npy")
    if zero_variance not in ("nan", "drop"):
        raise UserError(f"--zero-variance: expected 'nan' or 'drop', got {zero_variance!r}")
    result: dict[str, Any] = {}
    if path is not None:
        if path.is_dir():
            out_dir = out or path / "analysis"
            result.update(analyze_run_dir(path, out_dir, _parse_epochs(epochs), max_eig_snapshots))
        elif path.is_file():
            out_dir = out or path.parent / "analysis"
            result.update(analyze_checkpoint(path, out_dir))
        else:
            raise UserError(f"{path}: no such run folder or checkpoint file")
        atomic_write_json(json_safe(result), out_dir / "analysis.json")
        log(f"analysis written to {out_dir}")
    if features is not None:
        result["decorrelation"] = decorrelation(load_features(features), zero_variance=zero_variance)  # type: ignore[arg-type]
    if predictor is not None:
        result.update(predictor_diagnostics(load_predictor(predictor, label="--predictor")))
    if json_out:
        print(json.dumps(json_safe(result)))
        return
    for key in ("decorrelation", "asymmetry", "offdiag_energy", "dist_to_scaled_identity"):
        if key in result:
            v = result[key]
            print(f"{key:24s} {v:.6g}" if isinstance(v, float) else f"{key:24s} {v}")
    if "eigenvalues" in result:
        ev = result["eigenvalues"]
        shown = ", ".join(f"{x:.4g}" for x in ev[:8]) + (f", ... ({len(ev)} total)" if len(ev) > 8 else "")
        print(f"{'eigenvalues (Re, desc)':24s} {shown}")
    for p in result.get("plots", []):
        print(f"plot                     {p}")


def theorem_command(
    eta: list[float] = typer.Option(None, "--eta", help="weight decay value(s); repeat for several"),
    variant: list[str] = typer.Option(None, "--variant", help="exact | ordinary | symmetrized | symmetrized-joint"),
    lr: float = typer.Option(0.005, "--lr", help="gradient-descent step (t = step * lr)"),
    e_folds: float = typer.Option(3.0, "--e-folds", help="simulate until 2*eta*t reaches this"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(None, "--out", help="folder for theorem31.json and theorem31.png"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout (without curves)"),
) -> None:
    """Simulate Theorem 3.1: ||W_p^T W_p - F1 F1^T|| decays as exp(-2 eta t) (linear model)."""
    from simxir.analysis.theorem import TheoremConfig, VARIANTS, run_theorem

    cfg = TheoremConfig(lr=lr, e_folds=e_folds, seed=seed)
    if eta:
        cfg.etas = tuple(eta)
    if variant:
        cfg.variants = tuple(variant)
    result = run_theorem(cfg, keep_curves=out is not None)
    if out is not None:
        from simxir.analysis.plots import plot_theorem

        result["plot"] = str(plot_theorem(result, out / "theorem31.png"))
        atomic_write_json(json_safe(result), out / "theorem31.json")
        log(f"theorem31.json and theorem31.png written to {out}")
    summary = {k: v for k, v in result.items() if k != "runs"}
    summary["runs"] = [{k: v for k, v in r.items() if k != "curves"} for r in result["runs"]]
    if json_out:
        print(json.dumps(json_safe(summary)))
        return
    print(f"{'variant':18s} {'eta':>6s} {'2*eta':>7s} {'fitted':>8s} {'rel.err':>8s} {'max dev':>8s}")
    for r in summary["runs"]:
        print(f"{r['variant']:18s} {r['eta']:6g} {r['predicted_rate']:7.4f} {r['fitted_rate']:8.4f} "
              f"{r['rel_error']:8.2%} {r['envelope_deviation']:8.4f}")
    verdict = "yes" if result["exact_within_10pct"] else "no"
    print(f"exact runs within 10% of 2*eta: {verdict}  (variants: {', '.join(VARIANTS)})")


def ablation_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every row, as for simxir "
                                          "pretrain (e.g. epochs=10 optim.name=adamw optim.lr=0.001)"),
    out: Path = typer.Option(..., "--out", help="folder: one run folder per row, ablation.json, ablation.md"),
    recipe: str = typer.Option(None, "--recipe", help="pretraining YAML recipe (method bridge implied)"),
    data: str = typer.Option(None, "--data", help="dataset spec (digits, npz:FILE, cifar10:DIR, ...)"),
    rows: str = typer.Option(None, "--rows", help="comma-separated rows or groups: paper (default: the paper's Table 3 rows, c_inv=1, c_cov 0/1, next to its outcomes), switches (one switch at a time from the full method)"),
    knn_k: int = typer.Option(20, "--knn-k", help="k of the cosine kNN accuracy"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Bridging paper Table 3: train the bridge method with parts switched off; accuracy or COLLAPSE."""
    from simxir.analysis.ablation import format_table, run_ablation, select_rows

    if knn_k < 1:
        raise UserError(f"--knn-k: expected a positive integer, got {knn_k}")
    chosen = select_rows([r.strip() for r in rows.split(",") if r.strip()] if rows else None)
    summary = run_ablation(chosen, out, recipe=recipe, overrides=list(overrides or []), data=data, knn_k=knn_k)
    if json_out:
        print(json.dumps(json_safe(summary)))
        return
    print(format_table(json_safe(summary)))
