"""One plot of the decorrelation curves ||corr(Z) - I||_F^2 over pretraining epochs (bridging paper, Fig. 1).

Reads ``runs/pre-M/metrics.csv`` (the engine's per-epoch ``decorrelation`` of projector outputs on
un-augmented test images) for BYOL (linear predictor), SimSiam, Barlow Twins, VICReg and bridge,
runs ``simxir analyze runs/pre-M --json`` for each (kept in results/analysis/decorrelation/), and
writes results/analysis/decorrelation_curves.png + .json. Projector widths differ (128 vs 2048), so
the right panel divides by d(d-1): the mean squared off-diagonal correlation.
Usage (repo root, after pretrain_all.sh): python benchmarks/experiments/decorrelation_curves.py
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = {"byol-linear": "BYOL (linear predictor)", "byol-linear-adamw": "BYOL (linear predictor, AdamW)",
        "simsiam": "SimSiam", "barlow_twins": "Barlow Twins",
        "vicreg": "VICReg", "bridge": "bridge"}
OUT = Path("results/analysis")


def proj_dim(run: Path) -> int | None:
    """Projector output width from the saved config (proj_dim or the last of proj_sizes)."""
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    m = cfg.get("method") or {}
    if m.get("proj_sizes"):
        return int(m["proj_sizes"][-1])
    if m.get("proj_dim"):
        return int(m["proj_dim"])
    from simxir.methods import CONFIGS
    c = CONFIGS[cfg["method_name"]]()
    return int(getattr(c, "proj_dim", None) or c.proj_sizes[-1])


def main() -> None:
    (OUT / "decorrelation").mkdir(parents=True, exist_ok=True)
    curves: dict = {}
    for name, label in RUNS.items():
        run = Path("runs") / f"pre-{name}"
        if not (run / "metrics.csv").is_file():
            print(f"skip {name}: no {run}/metrics.csv", file=sys.stderr)
            continue
        with open(run / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        ep = [int(r["epoch"]) for r in rows if r.get("decorrelation")]
        dec = [float(r["decorrelation"]) for r in rows if r.get("decorrelation")]
        d = proj_dim(run)
        proc = subprocess.run(["simxir", "analyze", str(run), "--out", str(OUT / "decorrelation" / name), "--json"],
                              capture_output=True, text=True)
        analysis = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else \
            {"error": proc.stderr.strip().splitlines()[-1:] }
        curves[name] = {"label": label, "epochs": ep, "decorrelation": dec, "proj_dim": d,
                        "mean_sq_offdiag": [v / (d * (d - 1)) for v in dec] if d else None,
                        "falls": bool(len(dec) > 1 and dec[-1] < 0.9 * dec[0]),  # >10% drop first->last
                        "first_to_last_ratio": dec[-1] / dec[0] if dec and dec[0] else None,
                        "analyze": analysis}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for c in curves.values():
        axes[0].plot(c["epochs"], c["decorrelation"], marker="o", label=c["label"])
        if c["mean_sq_offdiag"]:
            axes[1].plot(c["epochs"], c["mean_sq_offdiag"], marker="o", label=c["label"])
    axes[0].set_ylabel(r"$\|\mathrm{corr}(Z) - I\|_F^2$")
    axes[1].set_ylabel(r"$\|\mathrm{corr}(Z) - I\|_F^2 / (d(d-1))$")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Decorrelation of projector outputs (CIFAR-10 12k subset, convnet-small)")
    fig.tight_layout()
    fig.savefig(OUT / "decorrelation_curves.png", dpi=120)
    (OUT / "decorrelation_curves.json").write_text(json.dumps(curves, indent=1))
    print("| method | d | decorrelation per epoch | last/first | falls? |")
    print("|---|---|---|---|---|")
    for c in curves.values():
        vals = ", ".join(f"{v:.4g}" for v in c["decorrelation"])
        r = c["first_to_last_ratio"]
        print(f"| {c['label']} | {c['proj_dim']} | {vals} | {r:.3g} | {'yes' if c['falls'] else 'no'} |")


if __name__ == "__main__":
    main()
