"""Decorrelation curves of the final 10-epoch pretraining runs (bridging paper, Figure 1).

Reads the engine's per-epoch ``decorrelation`` (||corr(Z) - I||_F^2 of projector outputs on the
first 512 un-augmented test images) from ``runs/pre10-NAME/metrics.csv`` and writes
``results/analysis/decorrelation-10ep.{json,png}`` and a markdown table on stdout. The right panel
divides by d(d-1) (d = 128 or 2048): the mean squared off-diagonal correlation.
Usage (repo root, after the final table's runs): python benchmarks/experiments/decorrelation_10ep.py
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

RUNS = {"byol-projbn-adamw-tau0.9": ("BYOL", 128), "simsiam-adamw": ("SimSiam", 128),
        "barlow_twins-adamw": ("Barlow Twins", 2048), "vicreg-adamw": ("VICReg", 2048),
        "bridge": ("bridge", 128), "moco": ("MoCo v2", 128), "simclr": ("SimCLR", 128)}
OUT = Path("results/analysis")


def main() -> None:
    curves = {}
    for name, (label, d) in RUNS.items():
        path = Path("runs") / f"pre10-{name}" / "metrics.csv"
        if not path.is_file():
            continue
        with open(path) as f:
            curves[name] = {"label": label, "d": d,
                            "decorrelation": [float(r["decorrelation"]) for r in csv.DictReader(f)]}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    print("| method | d | epoch 1 | epoch 10 | epoch 10 / epoch 1 |\n|---|---|---|---|---|")
    for c in curves.values():
        v = c["decorrelation"]
        ep = range(1, len(v) + 1)
        axes[0].plot(ep, v, marker="o", label=c["label"])
        axes[1].plot(ep, [x / (c["d"] * (c["d"] - 1)) for x in v], marker="o", label=c["label"])
        print(f"| {c['label']} | {c['d']} | {v[0]:.4g} | {v[-1]:.4g} | {v[-1] / v[0]:.2f} |")
    axes[0].set_yscale("log")
    axes[0].set_title("||corr(Z) - I||^2 (projector outputs)")
    axes[1].set_title("divided by d(d-1)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "decorrelation-10ep.png", dpi=110)
    (OUT / "decorrelation-10ep.json").write_text(json.dumps(curves, indent=1))


if __name__ == "__main__":
    main()
