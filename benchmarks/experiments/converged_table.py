"""Tables of the converged-encoder SimXIR experiment (benchmarks/experiments/converged.sh), rebuilt
from its run folders: results/finetune/converged/{README.md, results.json, runs/*.json}.

Every finished evaluation (ROOT/eval/NAME.json, with per-image outcomes) is copied to
results/finetune/converged/runs/, so the tables can be rebuilt from the repository alone
(``--from-results``). Changes are paired image by image: for each method and variant, the seeds'
(before, after) outcome vectors on the same 2,000 test images give the seed-averaged change, a 95%
bootstrap interval over test images and a Student-t interval over seeds
(simxir.eval.paired.paired_change_seeds).

Usage: python benchmarks/experiments/converged_table.py [--root /work/runs-converged] [--from-results]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr

from simxir.eval.paired import paired_change_seeds

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "finetune" / "converged"
METHODS = ("moco", "simclr", "byol", "simsiam")
NAMES = {"moco": "MoCo v2", "simclr": "SimCLR", "byol": "BYOL", "simsiam": "SimSiam"}
ARMS = {"standard": "ft-{u}-standard", "dagger": "ft-{u}-raw-anchor", "control": "cont-{u}",
        "rounds": "rounds-{u}"}
ARM_TEXT = {"before": "before", "standard": "SimXIR (eq. 3.1)", "dagger": "SimXIR-dagger (eq. 3.2)",
            "control": "control: +20 epochs of own method", "rounds": "SimXIR, T=4 rounds x 5 epochs"}
KS = ("5", "7", "11", "15", "17", "21")
HEADLINE = (("kNN cos k=11", ("knn", "cosine", "11")), ("kNN euc k=11", ("knn", "euclidean", "11")),
            ("linear top-1", ("linear",)), ("linear top-5", ("linear_top5",)))


def unpack(text: str, n: int) -> np.ndarray:
    import base64  # noqa: PLC0415

    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def right(ev: dict, key: tuple[str, ...]) -> np.ndarray:
    node: Any = ev["right"]
    for k in key:
        node = node[k]
    return unpack(node, ev["n_test"])


def load_evals(root: Path | None, from_results: bool) -> dict[str, dict]:
    runs = OUT / "runs"
    if not from_results and root is not None and (root / "eval").is_dir():
        runs.mkdir(parents=True, exist_ok=True)
        for p in sorted((root / "eval").glob("*.json")):
            shutil.copyfile(p, runs / p.name)
    return {p.stem: json.loads(p.read_text()) for p in sorted(runs.glob("*.json"))}


def load_curves(root: Path | None) -> dict[str, dict]:
    """kNN monitor curves and epochs of the pretraining runs (pre-*, cont-*), kept in results/."""
    path = OUT / "curves.json"
    curves = json.loads(path.read_text()) if path.is_file() else {}
    if root is not None:
        for p in sorted(root.glob("pre-*.json")) + sorted(root.glob("cont-*.json")):
            try:
                epochs = json.loads(p.read_text())["epochs"]
            except (json.JSONDecodeError, KeyError):
                continue          # a run still going, or failed: its stdout is not the summary yet
            curves[p.stem] = {"knn": {str(e["epoch"]): e["knn_top1"] for e in epochs if "knn_top1" in e},
                              "probe": {str(e["epoch"]): e["probe_test_top1"] for e in epochs
                                        if "probe_test_top1" in e},
                              "epochs": len(epochs)}
    return curves


def load_walls(root: Path | None) -> dict[str, int]:
    path = OUT / "walls.json"
    walls = json.loads(path.read_text()) if path.is_file() else {}
    if root is not None and (root / "done").is_dir():
        for p in (root / "done").iterdir():
            if p.name.startswith("unit-") or not p.read_text().strip():
                continue
            walls[p.name] = int(json.loads(p.read_text())["wall_s"])
    return walls


def load_train_times(root: Path | None, epochs: int) -> dict[str, int]:
    """Training seconds per run summed over its epochs' ``train_time_s`` (metrics.csv), which, unlike
    a stage's wall time, survives the interruptions that ended a session mid-stage; a control run
    counts only its epochs after ``epochs``."""
    path = OUT / "train_times.json"
    times = json.loads(path.read_text()) if path.is_file() else {}
    if root is not None:
        for p in sorted(root.glob("*/metrics.csv")):
            with p.open() as f:
                rows = list(csv.DictReader(f))
            first = epochs + 1 if p.parent.name.startswith("cont-") else 1
            times[p.parent.name] = int(sum(float(r["train_time_s"]) for r in rows
                                           if r.get("train_time_s") and int(r["epoch"]) >= first))
    return times


START = re.compile(r"^training .*?, (fp32|bfloat16|float16), channels_last=(True|False)")


def load_precisions(root: Path | None) -> dict[str, str]:
    """Each training run's precision as its start line says (ROOT/NAME.err, the last attempt's),
    kept in results/ (precision.json); runs whose logs were lost are absent."""
    path = OUT / "precision.json"
    prec = json.loads(path.read_text()) if path.is_file() else {}
    if root is not None:
        for p in sorted(root.glob("*.err")):
            found = [m for m in map(START.match, p.read_text(errors="replace").splitlines()) if m]
            if found and not p.stem.startswith("eval-"):
                prec[p.stem] = found[-1][1] + ("+channels_last" if found[-1][2] == "True" else "")
    return prec


def flatness(curve: dict[str, float]) -> dict[str, Any]:
    """Gain (points) of the kNN monitor over the last 20% of epochs, measured from the last logged
    epoch at or before 80% of the run (so over at least the last 20%)."""
    pts = sorted((int(e), 100 * v) for e, v in curve.items())
    if len(pts) < 2:
        return {"gain": math.nan, "flat": False, "from": None, "to": None}
    last_e, last_v = pts[-1]
    start = [p for p in pts if p[0] <= 0.8 * last_e] or pts[:1]
    e0, v0 = start[-1]
    gain = last_v - v0
    return {"gain": gain, "flat": gain < 0.5, "from": e0, "to": last_e}


def seeds_of(evals: dict[str, dict], method: str, arm: str) -> list[str]:
    """Seeds (units M-sS) where both the encoder and the arm's run were evaluated."""
    out = []
    for s in range(10):
        u = f"{method}-s{s}"
        if f"pre-{u}" in evals and (arm == "before" or ARMS[arm].format(u=u) in evals):
            out.append(u)
    return out


def arm_eval(evals: dict[str, dict], arm: str, u: str) -> dict:
    return evals[f"pre-{u}"] if arm == "before" else evals[ARMS[arm].format(u=u)]


def mean_of(evals: dict[str, dict], arm: str, units: list[str], get) -> float:  # noqa: ANN001
    return float(np.mean([get(arm_eval(evals, arm, u)) for u in units])) if units else math.nan


def fmt(v: float, sign: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:+.2f}" if sign else f"{v:.2f}"


def change_cell(c: dict) -> str:
    seed = (f"; seeds [{fmt(c['seed_ci_low'], True)}, {fmt(c['seed_ci_high'], True)}]"
            if not math.isnan(c["seed_ci_low"]) else "")
    return f"{c['change']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]{seed}"


def decide(c: dict | None) -> str:
    """helps / hurts when the image interval and (with >= 2 seeds) the seed interval exclude 0."""
    if c is None:
        return "not run"
    pos = c["ci_low"] > 0 and (c["seeds"] >= 2 and c["seed_ci_low"] > 0)
    neg = c["ci_high"] < 0 and (c["seeds"] >= 2 and c["seed_ci_high"] < 0)
    if pos:
        return "helps"
    if neg:
        return "hurts"
    return "cannot tell" if c["seeds"] >= 2 else "cannot tell (1 seed)"


def build(evals: dict[str, dict], curves: dict[str, dict], walls: dict[str, int], train: dict[str, int],
          epochs: int, prec: dict[str, str] | None = None) -> tuple[dict, str]:
    prec = prec or {}
    res: dict[str, Any] = {"methods": {}, "convergence": {}, "geometry": [], "walls_s": walls,
                           "train_s": train, "precision": prec}
    lines: list[str] = []
    # convergence
    lines += ["## Pretraining: is the kNN curve flat?", "",
              "kNN monitor (k=20, cosine majority vote, 10,000 train vs the 2,000 test images) every 10 "
              "epochs; gain over the last 20% = last epoch minus the last logged epoch at or before 80%.", "",
              "| run | kNN monitor by epoch (%) | gain over last 20% | flat (< 0.5) |", "|---|---|---|---|"]
    for name in sorted(c for c in curves if c.startswith("pre-")):
        cur = curves[name]["knn"]
        fl = flatness(cur)
        res["convergence"][name] = {**fl, "curve": cur}
        seq = ", ".join(f"{e}: {100 * v:.1f}" for e, v in sorted(cur.items(), key=lambda kv: int(kv[0])))
        lines.append(f"| {name} | {seq} | {fmt(fl['gain'], True)} ({fl['from']}->{fl['to']}) | "
                     f"{'yes' if fl['flat'] else 'no'} |")
    lines.append("")
    # table 1 and 2 layouts
    t1 = ["## Table 1 layout: kNN top-1 (%), mean over seeds", "",
          "| method | encoder | seeds | " + " | ".join(f"cos k={k}" for k in KS) + " | "
          + " | ".join(f"euc k={k}" for k in KS) + " |", "|---|---|---|" + "---|" * (2 * len(KS))]
    t2 = ["## Table 2 layout: linear probe (fast protocol, 100 epochs), mean over seeds", "",
          "| method | encoder | seeds | top-1 | top-5 |", "|---|---|---|---|---|"]
    ch = ["## Changes, paired over the same test images", "",
          "Change in points, mean over seeds, then [95% bootstrap interval over test images]; seeds [95% "
          "Student-t interval over seeds]. `vs control`: the SimXIR encoder minus the control encoder, "
          "paired the same way.", "",
          "| method | arm | seeds | " + " | ".join(h for h, _ in HEADLINE) + " |",
          "|---|---|---|" + "---|" * len(HEADLINE)]
    verdicts = ["## Verdicts", ""]
    per_seed = ["## Changes seed by seed", "",
                "Points after minus before on the same encoder (kNN cos k=11 / linear top-1), one column "
                "per pretraining seed; a consistent sign across seeds is what the seed interval measures.", "",
                "| method | arm | " + " | ".join(f"seed {s}" for s in range(3)) + " |", "|---|---|---|---|---|"]
    for m in METHODS:
        mres: dict[str, Any] = {"means": {}, "changes": {}, "vs_control": {}}
        for arm in ("before", "standard", "dagger", "control", "rounds"):
            units = seeds_of(evals, m, arm)
            if not units:
                continue
            knn = {met: {k: mean_of(evals, arm, units, lambda e, met=met, k=k: e["knn"][met][k]) for k in KS}
                   for met in ("cosine", "euclidean")}
            lin = {t: mean_of(evals, arm, units, lambda e, t=t: e["linear"][t]) for t in ("top1", "top5")}
            mres["means"][arm] = {"seeds": units, "knn": knn, "linear": lin}
            t1.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | {len(units)} | "
                      + " | ".join(fmt(knn["cosine"][k]) for k in KS) + " | "
                      + " | ".join(fmt(knn["euclidean"][k]) for k in KS) + " |")
            t2.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | {len(units)} | {fmt(lin['top1'])} | {fmt(lin['top5'])} |")
            if arm == "before":
                continue
            cells, vs = [], []
            for label, key in HEADLINE:
                c = paired_change_seeds([right(arm_eval(evals, "before", u), key) for u in units],
                                        [right(arm_eval(evals, arm, u), key) for u in units], seed=0)
                mres["changes"].setdefault(arm, {})[label] = c
                cells.append(change_cell(c))
                both = [u for u in units if u in seeds_of(evals, m, "control")]
                if arm != "control" and both:
                    v = paired_change_seeds([right(arm_eval(evals, "control", u), key) for u in both],
                                            [right(arm_eval(evals, arm, u), key) for u in both], seed=0)
                    mres["vs_control"].setdefault(arm, {})[label] = v
                    vs.append(change_cell(v))
            ch.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | {len(units)} | " + " | ".join(cells) + " |")
            seed_cells = []
            for s in range(3):
                u = f"{m}-s{s}"
                if u not in units:
                    seed_cells.append("-")
                    continue
                b, a = arm_eval(evals, "before", u), arm_eval(evals, arm, u)
                seed_cells.append(f"{a['knn']['cosine']['11'] - b['knn']['cosine']['11']:+.2f} / "
                                  f"{a['linear']['top1'] - b['linear']['top1']:+.2f}")
            per_seed.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | " + " | ".join(seed_cells) + " |")
            if vs:
                ch.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} vs control | {len(both)} | " + " | ".join(vs) + " |")
            for u in units:
                b, a = arm_eval(evals, "before", u), arm_eval(evals, arm, u)
                res["geometry"].append({"run": ARMS[arm].format(u=u), "arm": arm, "method": m,
                                        "before": b["geometry"], "after": a["geometry"],
                                        "knn_change": a["knn"]["cosine"]["11"] - b["knn"]["cosine"]["11"]})
        for arm in ("standard", "dagger", "rounds"):
            if arm not in mres["changes"]:
                continue
            c = mres["changes"][arm]
            v = mres["vs_control"].get(arm, {})
            words = ", ".join(f"{label}: {decide(c[label])}" + (f" (vs control: {decide(v.get(label))})" if v else "")
                              for label, _ in HEADLINE[:3])
            verdicts.append(f"- **{NAMES[m]}, {ARM_TEXT[arm]}** ({c[HEADLINE[0][0]]['seeds']} seed(s)): {words}")
        res["methods"][m] = mres
    lines += t1 + [""] + t2 + [""] + ch + [""] + per_seed + [""] + verdicts + [""]
    # geometry
    geo = res["geometry"]
    lines += ["## Contraction and separation (dynamics view, test embeddings, groups = classes)", "",
              "Mean within-class and between-class squared distance of the l2-normalised test features "
              "(simxir.dynamics GroupMetrics), before -> after. Neighbour averaging predicts within "
              "falls and within/between falls.", "",
              "| run | within | between | within/between | kNN cos k=11 change |", "|---|---|---|---|---|"]
    for g in geo:
        b, a = g["before"], g["after"]
        lines.append(f"| {g['run']} | {b['within_class_msd']:.4f} -> {a['within_class_msd']:.4f} | "
                     f"{b['between_class_msd']:.4f} -> {a['between_class_msd']:.4f} | {b['ratio']:.4f} -> "
                     f"{a['ratio']:.4f} | {g['knn_change']:+.2f} |")
    simx = [g for g in geo if g["arm"] in ("standard", "dagger", "rounds")]
    if len(simx) >= 3:
        dr = np.array([g["after"]["ratio"] - g["before"]["ratio"] for g in simx])
        dk = np.array([g["knn_change"] for g in simx])
        pr, pp = pearsonr(dr, dk) if dr.std() > 0 and dk.std() > 0 else (math.nan, math.nan)
        sr, sp = spearmanr(dr, dk) if dr.std() > 0 and dk.std() > 0 else (math.nan, math.nan)
        fell = int((dr < 0).sum())
        res["geometry_summary"] = {"runs": len(simx), "ratio_fell": fell, "pearson_r": float(pr),
                                   "pearson_p": float(pp), "spearman_r": float(sr), "spearman_p": float(sp)}
        lines += ["", f"SimXIR runs: within/between fell in {fell} of {len(simx)}. Across these runs, the change "
                  f"of within/between vs the kNN change: Pearson r = {pr:.2f} (p = {pp:.2g}), Spearman "
                  f"rho = {sr:.2f} (p = {sp:.2g}); the theory predicts a negative relation.", ""]
    # walls
    names = sorted(set(walls) | set(train))
    total = sum(max(walls.get(k, 0), train.get(k, 0)) for k in names)
    lines += ["## Wall time", "", f"Total: {total / 3600:.1f} h of run time over {len(names)} stages "
              "(one thread per run, two runs at a time on the 2-core CPU; per stage the larger of its two "
              "times below).", "",
              "`wall`: the stage's wall time as converged.sh recorded it, summed over the attempts that "
              "ended on their own (an attempt cut off by the end of a session is not in it). `training`: "
              "the run's own per-epoch training time (metrics.csv `train_time_s`, all its epochs across "
              "interruptions; a control only its extra epochs), without kNN monitors or checkpoints. "
              "A stage still running shows its epochs so far. `precision`: what the run's start line says "
              "`precision: auto` chose (`-`: its log was lost with its machine).", "",
              "| stage | wall (s) | training (s) | precision |", "|---|---|---|---|"]
    lines += [f"| {k} | {walls.get(k, '-')} | {train.get(k, '-')} | {prec.get(k, '-')} |" for k in names] + [""]
    res["epochs"] = epochs
    return res, "\n".join(lines)


HEADER = """# Does SimXIR improve converged encoders? (CIFAR-10 subset, 2-core CPU)

Generated by `python benchmarks/experiments/converged_table.py` from the run folders of
`benchmarks/experiments/converged.sh` (issue 15); do not edit by hand.

- Data: `npz:../shared/data/cifar10-12k.npz` (10,000 train / 2,000 test images, CIFAR-10).
- Encoders: convnet-small pretrained {epochs} epochs with MoCo v2, SimCLR, BYOL, SimSiam
  (simsiam-cifar augmentation, batch 256, SGD lr 0.05 wd 5e-4, 2 warm-up epochs + cosine; MoCo ema
  0.99), seeds 0, 1, 2, kNN monitor every 10 epochs.
- SimXIR: `recipes/finetune/simxir-cifar.yaml`, the paper's setting (one round of 20 epochs, SGD lr
  5e-4, momentum 0.9, wd 1e-6, batch 512, l2 loss, constant lr), standard (eq. 3.1) and dagger /
  raw-anchor (eq. 3.2); T=4 rounds of 5 epochs for BYOL seed 1 only. No hyper-parameter was tuned (the paper's
  lr was kept), so the test split was never used for a choice.
- Control: the encoder's own pretraining resumed to {ctrl} epochs (cosine schedule stretched to {ctrl}
  epochs: the extra 20 epochs run from lr 0.05 x (1 + cos(pi x {epochs}/{ctrl})) / 2 to 0).
- Precision: `precision: auto`, the product default, for every training run. Seeds 1 and 2 ran on a
  CPU with AVX512-BF16, where the start-up trial kept bf16 autocast + channels_last (the `precision`
  column under Wall time, read from each run's start line). Seed 0's logs were lost with its machine;
  it ran, most likely in fp32, on CPUs without native bf16 (the sessions' notes; its 85-108 s epochs
  against 21-26 s here). Before, after and control of one encoder share their precision, so every
  paired change is within one precision; the seed-by-seed table shows whether seed 0 stands apart.
- Evaluation of every encoder (`converged_eval.py`): kNN majority vote k = 5..21, cosine and
  euclidean, and the fast linear probe (100 epochs on standardised features), on the test split.

"""


def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/work/runs-converged")
    ap.add_argument("--from-results", action="store_true", help="rebuild from results/ only")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", default=str(OUT), help="results folder (default results/finetune/converged)")
    a = ap.parse_args()
    OUT = Path(a.out)
    root = None if a.from_results else Path(a.root)
    OUT.mkdir(parents=True, exist_ok=True)
    evals = load_evals(root, a.from_results)
    curves = load_curves(root)
    walls = load_walls(root)
    train = load_train_times(root, a.epochs)
    prec = load_precisions(root)
    (OUT / "precision.json").write_text(json.dumps(prec, indent=1, sort_keys=True))
    (OUT / "train_times.json").write_text(json.dumps(train, indent=1, sort_keys=True))
    (OUT / "curves.json").write_text(json.dumps(curves, indent=1))
    (OUT / "walls.json").write_text(json.dumps(walls, indent=1, sort_keys=True))
    res, text = build(evals, curves, walls, train, a.epochs, prec)
    (OUT / "results.json").write_text(json.dumps(res, indent=1, default=float))
    (OUT / "README.md").write_text(HEADER.format(epochs=a.epochs, ctrl=a.epochs + 20) + text)
    print(f"{len(evals)} evaluations, {len(curves)} curves -> {OUT}")


if __name__ == "__main__":
    main()
