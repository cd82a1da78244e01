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
from scipy.stats import pearsonr, spearmanr, ttest_1samp

from simxir.eval.paired import paired_change_seeds, seeds_call, seeds_interval, unpack_outcomes

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "results" / "finetune" / "converged"
METHODS = ("moco", "simclr", "byol", "simsiam")
NAMES = {"moco": "MoCo v2", "simclr": "SimCLR", "byol": "BYOL", "simsiam": "SimSiam"}
ARMS = {"standard": "ft-{u}-standard", "dagger": "ft-{u}-raw-anchor", "control": "cont-{u}",
        "lr0": "lr0-{u}", "rounds": "rounds-{u}"}
ARM_TEXT = {"before": "before", "standard": "SimXIR (eq. 3.1)", "dagger": "SimXIR-dagger (eq. 3.2)",
            "control": "control: +20 epochs of own method", "lr0": "lr = 0: SimXIR's 20 epochs, BN statistics only",
            "rounds": "SimXIR, T=4 rounds x 5 epochs"}
SIMXIR_ARMS = ("standard", "dagger", "rounds")
REFERENCES = (("control", "vs control"), ("lr0", "vs lr = 0"))   # what a SimXIR arm is also paired against
KS = ("5", "7", "11", "15", "17", "21")
HEADLINE = (("kNN cos k=11", ("knn", "cosine", "11")), ("kNN euc k=11", ("knn", "euclidean", "11")),
            ("linear top-1", ("linear",)), ("linear top-5", ("linear_top5",)))


def right(ev: dict, key: tuple[str, ...]) -> np.ndarray:
    node: Any = ev["right"]
    for k in key:
        node = node[k]
    return unpack_outcomes(node, ev["n_test"])


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
            if p.stem in curves:
                continue          # a pretraining rerun for a later arm: the committed curve stays
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
            walls.setdefault(p.name, int(json.loads(p.read_text())["wall_s"]))   # a rerun keeps the first
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
            times.setdefault(p.parent.name, 0)
            times[p.parent.name] = times[p.parent.name] or int(sum(float(r["train_time_s"]) for r in rows
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
                prec.setdefault(p.stem, found[-1][1] + ("+channels_last" if found[-1][2] == "True" else ""))
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


DIFFERENT_BASE: set[str] = set()   # units whose pretraining rerun (base-M-sS) is not the committed encoder


def arm_eval(evals: dict[str, dict], arm: str, u: str, of: str | None = None) -> dict:
    """The evaluation of ``arm`` for unit ``u``; ``before`` of the lr = 0 arm (``of="lr0"``) is the
    encoder it was trained from: the rerun where that is not the committed one."""
    if arm == "before":
        return evals[f"base-{u}"] if of == "lr0" and u in DIFFERENT_BASE else evals[f"pre-{u}"]
    return evals[ARMS[arm].format(u=u)]


def same_encoder(a: dict, b: dict) -> bool:
    """Two evaluations of bit-identical encoders agree on every per-image outcome and the geometry."""
    return a["right"] == b["right"] and a["geometry"] == b["geometry"]


def check_bases(evals: dict[str, dict]) -> dict[str, bool]:
    """``{unit: identical}`` for every pre-M-sS trained again (base-M-sS) for a later arm; a unit whose
    rerun differs goes into DIFFERENT_BASE: its lr = 0 arm pairs with the rerun, and is not paired
    with the SimXIR arms (they started from another encoder)."""
    out = {}
    DIFFERENT_BASE.clear()
    for name in sorted(n for n in evals if n.startswith("base-")):
        u = name.removeprefix("base-")
        out[u] = f"pre-{u}" in evals and same_encoder(evals[name], evals[f"pre-{u}"])
        if not out[u]:
            DIFFERENT_BASE.add(u)
    return out


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
    word = seeds_call(c)
    if word != "within noise":
        return {"gain": "helps", "loss": "hurts"}[word]
    return "cannot tell" if c["seeds"] >= 2 else "cannot tell (1 seed)"


def geometry_summary(runs: list[dict]) -> dict[str, Any]:
    """How within, between and their ratio moved over ``runs`` (relative changes in percent)."""
    def rel(key: str) -> np.ndarray:
        return np.array([100 * (g["after"][key] / g["before"][key] - 1) for g in runs])

    out: dict[str, Any] = {"runs": len(runs)}
    for key, short in (("within_class_msd", "within"), ("between_class_msd", "between"), ("ratio", "ratio")):
        r = rel(key)
        out[short] = {"fell": int((r < 0).sum()), "min_pct": float(r.min()), "max_pct": float(r.max()),
                      "median_pct": float(np.median(r))}
    w, b, q = out["within"], out["between"], out["ratio"]
    # global contraction: the between-class distance falls with the within-class one, and their ratio
    # moves far less than either (the embedding shrinks as a whole; no group separates)
    out["global_contraction"] = bool(b["fell"] >= 0.8 * len(runs) and w["fell"] >= 0.8 * len(runs)
                                     and w["median_pct"] <= -5 and abs(q["median_pct"]) < 0.25 * abs(w["median_pct"]))
    return out


def geometry_text(name: str, s: dict[str, Any]) -> str:
    w, b, q = s["within"], s["between"], s["ratio"]
    text = (f"**{name} runs ({s['runs']})**: within-class distance fell in {w['fell']} (median "
            f"{w['median_pct']:+.1f}%, {w['min_pct']:+.1f}% to {w['max_pct']:+.1f}%), between-class distance fell "
            f"in {b['fell']} (median {b['median_pct']:+.1f}%, {b['min_pct']:+.1f}% to {b['max_pct']:+.1f}%), their "
            f"ratio fell in {q['fell']} (median {q['median_pct']:+.1f}%, {q['min_pct']:+.1f}% to "
            f"{q['max_pct']:+.1f}%).")
    if abs(w["median_pct"]) < 5 and abs(b["median_pct"]) < 5:
        text += " Both distances moved by less than 5% (median): the geometry barely changed."
    if s["global_contraction"]:
        text += (" That is **global contraction**: the classes came closer to each other about as much as their "
                 "members came closer together, so the embedding shrank as a whole. It is not the alienation of "
                 "Theorem 4.4 (disjoint groups moving apart), which would show as a clearly falling ratio with "
                 "between-class distances kept or growing.")
    return text


def pooled(evals: dict[str, dict]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each SimXIR arm against each reference, pooled over the encoders (method x seed) that have
    both: the per-encoder changes (points), their mean with a 95% t interval and a one-sample t test
    (the paired t over encoders), how many got worse, and Holm's correction over the whole family."""
    tests = [(arm, ref) for arm in ("standard", "dagger") for ref in ("before", "control", "lr0")]
    tests += [("lr0", "before"), ("control", "before")]
    rows = []
    for arm, ref in tests:
        for label, key in HEADLINE:
            deltas = []
            for m in METHODS:
                for u in seeds_of(evals, m, arm):
                    if ref == "lr0" and u in DIFFERENT_BASE:
                        continue      # the SimXIR arm and the lr = 0 arm started from different encoders
                    if ref == "before" or u in seeds_of(evals, m, ref):
                        deltas.append(100 * float(right(arm_eval(evals, arm, u), key).mean()
                                                  - right(arm_eval(evals, ref, u, of=arm), key).mean()))
            if len(deltas) < 2:
                continue
            lo, hi = seeds_interval(deltas)
            p = float(ttest_1samp(deltas, 0.0).pvalue) if np.std(deltas) > 0 else 1.0
            rows.append({"arm": arm, "reference": ref, "metric": label, "n": len(deltas),
                         "mean": float(np.mean(deltas)), "ci_low": lo, "ci_high": hi, "p": p,
                         "worse": int(sum(d < 0 for d in deltas)), "deltas": deltas})
    order = sorted(range(len(rows)), key=lambda i: rows[i]["p"])
    running = 0.0
    for rank, i in enumerate(order):        # Holm's step-down adjustment
        running = max(running, min(1.0, (len(rows) - rank) * rows[i]["p"]))
        rows[i]["p_holm"] = running
    names = {"before": "before", "control": "the +20-epoch control", "lr0": "lr = 0"}
    lines = ["## Pooled over encoders", "",
             f"Each row pools the encoders (method x pretraining seed) that have both runs: the mean change in points "
             f"with its 95% t interval over encoders, the paired t test's p (one-sample t on the per-encoder "
             f"changes), that p after Holm's correction over all {len(rows)} rows of this table (the family of "
             f"tests this README makes), and how many encoders got worse. These poolings were chosen after the "
             f"per-method tables had been seen (post hoc); the Holm column is the one to read.", "",
             "| arm | against | metric | encoders | mean change [95% CI] | p | p (Holm) | worse |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {ARM_TEXT[r['arm']]} | {names[r['reference']]} | {r['metric']} | {r['n']} | "
                     f"{r['mean']:+.2f} [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}] | {r['p']:.2g} | "
                     f"{r['p_holm']:.2g} | {r['worse']} of {r['n']} |")
    return rows, lines


def findings(res: dict[str, Any]) -> list[str]:
    """The README's summary, every sentence computed from ``res``."""
    conv = res["convergence"]
    flat = sum(c["flat"] for c in conv.values())
    out = ["## What the numbers say", "",
           f"- **Encoders**: {flat} of {len(conv)} pretraining runs pass the flatness rule; "
           + ("all are converged by it." if flat == len(conv) else
              "the others were still improving at the last epochs, so the tables are about 60-epoch encoders, "
              "and the +20-epoch control, not `before`, is the fair reference for a SimXIR gain.")]
    rows = res.get("pooled") or []
    names = {"before": "before", "control": "the control", "lr0": "lr = 0"}
    significant = [r for r in rows if r["p"] < 0.05]
    for r in significant:
        out.append(f"- {ARM_TEXT[r['arm']]} vs {names[r['reference']]}, {r['metric']}, pooled over {r['n']} "
                   f"encoders: {r['mean']:+.2f} points [{r['ci_low']:+.2f}, {r['ci_high']:+.2f}], p = {r['p']:.2g} "
                   f"({r['worse']} of {r['n']} worse); after Holm's correction over the {len(rows)} pooled tests "
                   + ("p = " + f"{r['p_holm']:.2g}: it holds." if r["p_holm"] < 0.05 else
                      f"p = {r['p_holm']:.2g}: it does not hold, so read it as a lead, not a finding."))
    if rows and not any(r["p_holm"] < 0.05 for r in rows):
        out.append(f"- No pooled change survives Holm's correction over the {len(rows)} pooled tests; per method, "
                   f"the verdicts below cannot tell either way except where they say so.")
    lr0 = [r for r in rows if r["reference"] == "lr0" or r["arm"] == "lr0"]
    if lr0:
        head = {(r["arm"], r["reference"]): r for r in lr0 if r["metric"] == HEADLINE[0][0]}
        bn = head.get(("lr0", "before"))
        std = head.get(("standard", "lr0"))
        if bn and std:
            out.append(f"- **BatchNorm re-estimation** ({HEADLINE[0][0]}, {bn['n']} encoders): lr = 0 alone moves it "
                       f"{bn['mean']:+.2f} [{bn['ci_low']:+.2f}, {bn['ci_high']:+.2f}] from before; SimXIR (eq. 3.1) "
                       f"against lr = 0: {std['mean']:+.2f} [{std['ci_low']:+.2f}, {std['ci_high']:+.2f}], so "
                       + ("most of SimXIR's kNN change is BN statistics." if abs(bn["mean"]) >= 0.5 * abs(
                           std["mean"] + bn["mean"]) else "SimXIR's kNN change is not BN statistics alone."))
    geo = (res.get("geometry_summary") or {}).get("SimXIR")
    if geo:
        out.append("- **Geometry**: " + ("global contraction, not alienation: " if geo["global_contraction"] else "")
                   + f"in the {geo['runs']} SimXIR runs the within-class distance fell in {geo['within']['fell']} "
                   f"(median {geo['within']['median_pct']:+.1f}%), the between-class distance in "
                   f"{geo['between']['fell']} (median {geo['between']['median_pct']:+.1f}%), their ratio in "
                   f"{geo['ratio']['fell']} (median {geo['ratio']['median_pct']:+.1f}%).")
    return out + [""]


def build(evals: dict[str, dict], curves: dict[str, dict], walls: dict[str, int], train: dict[str, int],
          epochs: int, prec: dict[str, str] | None = None) -> tuple[dict, str]:
    prec = prec or {}
    bases = check_bases(evals)
    res: dict[str, Any] = {"bases_identical": bases, "methods": {}, "convergence": {}, "geometry": [], "walls_s": walls,
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
        mres: dict[str, Any] = {"means": {}, "changes": {}, "vs_control": {}, "vs_lr0": {}}
        for arm in ("before", "standard", "dagger", "control", "lr0", "rounds"):
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
            cells, vs = [], {}
            for label, key in HEADLINE:
                c = paired_change_seeds([right(arm_eval(evals, "before", u, of=arm), key) for u in units],
                                        [right(arm_eval(evals, arm, u), key) for u in units], seed=0)
                mres["changes"].setdefault(arm, {})[label] = c
                cells.append(change_cell(c))
                for ref, _ in REFERENCES if arm in SIMXIR_ARMS else ():
                    both = [u for u in units if u in seeds_of(evals, m, ref)
                            and not (ref == "lr0" and u in DIFFERENT_BASE)]
                    if not both:
                        continue
                    v = paired_change_seeds([right(arm_eval(evals, ref, u), key) for u in both],
                                            [right(arm_eval(evals, arm, u), key) for u in both], seed=0)
                    mres[f"vs_{ref}"].setdefault(arm, {})[label] = v
                    vs.setdefault(ref, (both, []))[1].append(change_cell(v))
            ch.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | {len(units)} | " + " | ".join(cells) + " |")
            seed_cells = []
            for s in range(3):
                u = f"{m}-s{s}"
                if u not in units:
                    seed_cells.append("-")
                    continue
                b, a = arm_eval(evals, "before", u, of=arm), arm_eval(evals, arm, u)
                seed_cells.append(f"{a['knn']['cosine']['11'] - b['knn']['cosine']['11']:+.2f} / "
                                  f"{a['linear']['top1'] - b['linear']['top1']:+.2f}")
            per_seed.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} | " + " | ".join(seed_cells) + " |")
            for ref, text in REFERENCES:
                if ref in vs:
                    both, row = vs[ref]
                    ch.append(f"| {NAMES[m]} | {ARM_TEXT[arm]} {text} | {len(both)} | " + " | ".join(row) + " |")
            for u in units:
                b, a = arm_eval(evals, "before", u, of=arm), arm_eval(evals, arm, u)
                res["geometry"].append({"run": ARMS[arm].format(u=u), "arm": arm, "method": m,
                                        "before": b["geometry"], "after": a["geometry"],
                                        "knn_change": a["knn"]["cosine"]["11"] - b["knn"]["cosine"]["11"]})
        for arm in SIMXIR_ARMS:
            if arm not in mres["changes"]:
                continue
            c = mres["changes"][arm]
            refs = [(text, mres[f"vs_{ref}"].get(arm, {})) for ref, text in REFERENCES]
            words = ", ".join(f"{label}: {decide(c[label])}" + "".join(
                f" ({text}: {decide(v.get(label))})" for text, v in refs if v) for label, _ in HEADLINE[:3])
            verdicts.append(f"- **{NAMES[m]}, {ARM_TEXT[arm]}** ({c[HEADLINE[0][0]]['seeds']} seed(s)): {words}")
        res["methods"][m] = mres
    lines += t1 + [""] + t2 + [""] + ch + [""] + per_seed + [""] + verdicts + [""]
    res["pooled"], pooled_lines = pooled(evals)
    lines += pooled_lines + [""]
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
    res["geometry_summary"] = {}
    for arms, name in ((SIMXIR_ARMS, "SimXIR"), (("control",), "control"), (("lr0",), "lr = 0")):
        runs = [g for g in geo if g["arm"] in arms]
        if runs:
            summary = geometry_summary(runs)
            res["geometry_summary"][name] = summary
            lines += ["", geometry_text(name, summary)]
    simx = [g for g in geo if g["arm"] in SIMXIR_ARMS]
    if len(simx) >= 3:
        dr = np.array([g["after"]["ratio"] - g["before"]["ratio"] for g in simx])
        dk = np.array([g["knn_change"] for g in simx])
        pr, pp = pearsonr(dr, dk) if dr.std() > 0 and dk.std() > 0 else (math.nan, math.nan)
        sr, sp = spearmanr(dr, dk) if dr.std() > 0 and dk.std() > 0 else (math.nan, math.nan)
        res["geometry_summary"]["SimXIR"].update(pearson_r=float(pr), pearson_p=float(pp), spearman_r=float(sr),
                                                 spearman_p=float(sp))
        lines += ["", f"Across the SimXIR runs, the change of within/between against the kNN change: Pearson "
                  f"r = {pr:.2f} (p = {pp:.2g}), Spearman rho = {sr:.2f} (p = {sp:.2g}); neighbour averaging "
                  f"would predict a negative relation.", ""]
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
    return res, "\n".join(findings(res) + lines)


HEADER = """# Does SimXIR improve {what}? (CIFAR-10 subset, 2-core CPU)

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
- lr = 0 control (MoCo and SimCLR encoders): SimXIR's recipe and 20 epochs with the learning rate at
  0, so no weight moves and only BatchNorm's running statistics are re-estimated on SimXIR's
  augmented views; a SimXIR change that the lr = 0 run also shows is BN re-estimation, not learning.
  Its encoders were pretrained again (their run folders were lost){bases}.
- Converged? {flat_text}
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
    bases = res["bases_identical"]
    (OUT / "results.json").write_text(json.dumps(res, indent=1, default=float))
    flat = [n for n, c in res["convergence"].items() if c["flat"]]
    total = len(res["convergence"])
    what = "converged encoders" if flat and len(flat) == total else f"{a.epochs}-epoch encoders"
    flat_text = (f"{len(flat)} of {total} pretraining runs pass the flatness rule below (kNN gain over the last 20% "
                 f"of epochs under 0.5 points)" + ("" if len(flat) == total else
                 f"; the others were still improving, so these are {a.epochs}-epoch encoders, not converged ones, "
                 f"and the +20-epoch control is expected to gain") + ".")
    same = [u for u, ok in bases.items() if ok]
    other = [u for u, ok in bases.items() if not ok]
    base_text = ((f"; {', '.join(same)}: bit-identical to the committed encoders (every per-image outcome and "
                  f"the class geometry equal), so their lr = 0 runs pair with the same before as the other arms"
                  if same else "")
                 + (f"; {', '.join(other)}: not identical (another CPU and precision than the committed run), so "
                    f"their lr = 0 runs pair with the rerun and are left out of the SimXIR-vs-lr = 0 comparisons"
                    if other else ""))
    (OUT / "README.md").write_text(HEADER.format(epochs=a.epochs, ctrl=a.epochs + 20, what=what, flat_text=flat_text,
                                                 bases=base_text) + text)
    print(f"{len(evals)} evaluations, {len(curves)} curves -> {OUT}")


if __name__ == "__main__":
    main()
