"""The small-image ViT SimXIR experiment's tables (vit_cifar.sh), rebuilt from its run folder:
results/finetune/vit-cifar/{README.md, results.json, runs/*.json}.

Before/after in the SimXIR paper's Table 1 layout (kNN top-1, cosine / euclidean, k = 5..21) and
Table 2 layout (linear top-1 / top-5), for both variants and the control (the pretraining resumed for
as many epochs); every change is paired image by image on the same 2,000 test images: a 95% percentile
bootstrap interval over the test images and McNemar's exact test (one pretraining seed: no interval
over seeds).

Usage: python benchmarks/experiments/vit_cifar_table.py [--root /work/runs-vit] [--from-results]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path
from typing import Any

from converged_table import right

from simxir.eval.knn import DEFAULT_KS
from simxir.eval.paired import paired_change, verdict

ROOT_DIR = Path(__file__).resolve().parents[2]
OUT = ROOT_DIR / "results" / "finetune" / "vit-cifar"
ARMS = {"ft-standard": "SimXIR (eq. 3.1)", "ft-raw-anchor": "SimXIR dagger (eq. 3.2)",
        "cont": "control: more MoCo"}
METHOD = "MoCo, 6 epochs"


def _cell(c: dict) -> str:
    return f"{c['change']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def load(root: Path | None) -> tuple[dict[str, dict], dict[str, Any]]:
    runs = OUT / "runs"
    if root is not None:
        runs.mkdir(parents=True, exist_ok=True)
        for p in sorted((root / "eval").glob("*.json")):
            shutil.copyfile(p, runs / p.name)
        info: dict[str, Any] = {"walls_s": {p.stem: int(p.read_text()) for p in sorted(root.glob("*.wall"))}}
        curve = {}
        with open(root / "pre" / "metrics.csv") as f:
            for row in csv.DictReader(f):
                if row.get("knn_top1"):
                    curve[row["epoch"]] = 100.0 * float(row["knn_top1"])
        info["pretrain_knn_curve"] = curve
        cfg = (root / "pre" / "config.yaml").read_text()
        info["pretrain_config"] = cfg
        (OUT / "info.json").write_text(json.dumps(info, indent=1))
    info = json.loads((OUT / "info.json").read_text())
    return {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))}, info


def build(evals: dict[str, dict], info: dict[str, Any]) -> tuple[dict, str]:
    pre = evals["pre"]
    res: dict[str, Any] = {"before": {"knn": pre["knn"], "linear": pre["linear"]}, "arms": {}, **info}
    lines = ["# SimXIR on a small-image ViT (CIFAR-10 12k subset, CPU)", "",
             "`bash benchmarks/experiments/vit_cifar.sh` then `python benchmarks/experiments/vit_cifar_table.py` "
             "(the pretraining recipe's settings are in `info.json`). One pretraining seed; every change is "
             "paired on the same 2,000 test images: 95% bootstrap interval over the test images, McNemar's "
             "exact test. Changes in points.", ""]
    curve = info.get("pretrain_knn_curve", {})
    if curve:
        lines += ["Pretraining kNN monitor (k=20, cosine, top-1 %): "
                  + ", ".join(f"epoch {e}: {v:.1f}" for e, v in curve.items()), ""]
    pilot = OUT / "simsiam-pilot.json"
    if pilot.is_file():
        rows = json.loads(pilot.read_text())["per_epoch"]
        lines += ["Why MoCo: SimSiam on the same ViT and budget (`simsiam-pilot.json`) lost effective rank, "
                  + ", ".join(f"epoch {r['epoch']}: erank {r['feat_erank']}"
                              + (f", kNN {r['knn_top1_percent']}" if r["knn_top1_percent"] else "") for r in rows)
                  + ", so it was stopped and MoCo (`recipes/pretrain/cpu-cifar10/vit-moco.yaml`) used instead.", ""]
    ks = [str(k) for k in DEFAULT_KS]
    for metric in ("cosine", "euclidean"):
        lines += [f"## Table 1 layout: kNN top-1 ({metric}), before -> after, change [95% CI]", "",
                  "| encoder | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks),
                  *(["| random init (seed 0, for scale) | " + " | ".join(f"{evals['random']['knn'][metric][k]:.2f}"
                                                                    for k in ks) + " |"] if "random" in evals else []),
                  f"| before ({METHOD}) | " + " | ".join(f"{pre['knn'][metric][k]:.2f}" for k in ks) + " |"]
        for arm, label in ARMS.items():
            if arm not in evals:
                continue
            cells = []
            for k in ks:
                c = paired_change(right(pre, ("knn", metric, k)), right(evals[arm], ("knn", metric, k)))
                res["arms"].setdefault(arm, {}).setdefault("knn", {}).setdefault(metric, {})[k] = c
                cells.append(f"{evals[arm]['knn'][metric][k]:.2f} ({_cell(c)})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Table 2 layout: linear probe (fast protocol, 100 epochs on frozen features)", "",
              "| encoder | top-1 | change [95% CI] | top-5 | change [95% CI] |", "|---|---|---|---|---|",
              *([f"| random init (seed 0, for scale) | {evals['random']['linear']['top1']:.2f} | | "
                 f"{evals['random']['linear']['top5']:.2f} | |"] if "random" in evals else []),
              f"| before ({METHOD}) | {pre['linear']['top1']:.2f} | | {pre['linear']['top5']:.2f} | |"]
    for arm, label in ARMS.items():
        if arm not in evals:
            continue
        c1 = paired_change(right(pre, ("linear",)), right(evals[arm], ("linear",)))
        c5 = paired_change(right(pre, ("linear_top5",)), right(evals[arm], ("linear_top5",)))
        res["arms"][arm]["linear"] = {"top1": c1, "top5": c5}
        lines.append(f"| {label} | {evals[arm]['linear']['top1']:.2f} | {_cell(c1)} | "
                     f"{evals[arm]['linear']['top5']:.2f} | {_cell(c5)} |")
    lines += ["", "## Verdicts (kNN cosine k=11, linear top-1)", ""]
    if "random" in evals:
        c = paired_change(right(evals["random"], ("knn", "cosine", "11")), right(pre, ("knn", "cosine", "11")))
        res["pretraining_vs_random_knn_cosine_11"] = c
        lines.append(f"- pretraining against the random init (kNN cosine k=11): {verdict(c)}")
    for arm, label in ARMS.items():
        if arm in res["arms"]:
            knn = res["arms"][arm]["knn"]["cosine"]["11"]
            lines.append(f"- {label}: kNN {verdict(knn)}; linear {verdict(res['arms'][arm]['linear']['top1'])}")
    for arm in ("ft-standard", "ft-raw-anchor"):
        if arm in evals and "cont" in evals:   # SimXIR against the control, image by image
            c = paired_change(right(evals["cont"], ("knn", "cosine", "11")), right(evals[arm], ("knn", "cosine", "11")))
            res["arms"][arm]["vs_control_knn_cosine_11"] = c
            lines.append(f"- {ARMS[arm]} against the control (kNN cosine k=11): {verdict(c)}")
    geo = {name: ev["geometry"] for name, ev in evals.items()}
    res["geometry"] = geo
    keys = [k for k in next(iter(geo.values())) if isinstance(next(iter(geo.values()))[k], (int, float))]
    lines += ["", "## Class geometry of the l2-normalised test features", "",
              "| encoder | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name in ["random", "pre", *ARMS]:
        if name in geo:
            lines.append(f"| {name} | " + " | ".join(f"{geo[name][k]:.4g}" for k in keys) + " |")
    walls = info.get("walls_s", {})
    lines += ["", "## Wall time (s, 2-core CPU, one thread per run, another experiment beside it)", "",
              "| stage | wall (s) |", "|---|---|"] + [f"| {k} | {v} |" for k, v in walls.items()]
    lines += ["", f"Total: {sum(walls.values()) / 3600:.2f} h.", ""]
    return res, "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/work/runs-vit")
    ap.add_argument("--from-results", action="store_true", help="rebuild from results/ only")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    evals, info = load(None if a.from_results else Path(a.root))
    res, text = build(evals, info)
    (OUT / "results.json").write_text(json.dumps(res, indent=1, default=float))
    (OUT / "README.md").write_text(text)
    print(text)



if __name__ == "__main__":
    main()
