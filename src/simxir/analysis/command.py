"""``simxir analyze`` (run folders, checkpoints, feature files, predictor matrices) and
``simxir theorem31`` (the Theorem 3.1 simulation).

``simxir analyze PATH`` takes a run folder (``metrics.csv`` + ``predictor/epoch_XXXX.npy``) or a
training checkpoint (``checkpoint.pt``: per-epoch history + the method's state_dict); ``--features``
takes an ``.npz`` with key ``features`` (n x d) and ``--predictor`` a ``.npy`` d x d matrix. Several
inputs may be combined; the ``--json`` object holds only the keys that apply.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from simxir.analysis.predictor import load_predictor, predictor_diagnostics
from simxir.analysis.runs import analyze_path, load_features
from simxir.analysis.theorem import VARIANTS, TheoremConfig, run_theorem, write_theorem
from simxir.decorrelation import decorrelation
from simxir.errors import UserError
from simxir.io import json_safe
from simxir.progress import log


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
        found, out_dir = analyze_path(path, out, _parse_epochs(epochs), max_eig_snapshots)
        result.update(found)
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
    cfg = TheoremConfig(lr=lr, e_folds=e_folds, seed=seed)
    if eta:
        cfg.etas = tuple(eta)
    if variant:
        cfg.variants = tuple(variant)
    result = run_theorem(cfg, keep_curves=out is not None)
    if out is not None:
        write_theorem(result, out)
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
