"""Collect the SimXIR fine-tuning runs (finetune_all.sh, finetune_tune.sh) into tables + JSON.

Usage (repo root): python benchmarks/experiments/finetune_table.py
Writes results/finetune/results.json and prints the markdown tables of results/finetune/README.md:
before/after/signed change of kNN (cos/euc, k=5..21) and linear top-1/top-5 per run (test split),
and the validation kNN of the tuning runs with the selected setting.
"""

from __future__ import annotations

import json
from pathlib import Path

KS = ["5", "7", "11", "15", "17", "21"]


def load(p: Path) -> dict | None:
    if not p.is_file() or not p.read_text().strip():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def knn_mean(ev: dict) -> float:
    vals = [ev["knn"][m][k] for m in ("cosine", "euclidean") for k in KS]
    return sum(vals) / len(vals)


def table(name: str, s: dict) -> str:
    b, a = s["before"], s["after"]
    lines = [f"**{name}** (evaluated on {s.get('evaluated_on')}, {len(s.get('epochs') or [])} epochs"
             f"{', COLLAPSED' if s.get('collapsed') else ''})", "",
             "| | " + " | ".join(f"cos {k}" for k in KS) + " | " + " | ".join(f"euc {k}" for k in KS)
             + " | lin top-1 | lin top-5 |", "|" + "---|" * 15]
    for label, ev in (("before", b), ("after", a)):
        lin = ev.get("linear") or {}
        cells = [f"{ev['knn'][m][k]:.2f}" for m in ("cosine", "euclidean") for k in KS]
        cells += [f"{lin['top1']:.2f}" if lin else "—", f"{lin['top5']:.2f}" if lin else "—"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    diff = [f"{a['knn'][m][k] - b['knn'][m][k]:+.2f}" for m in ("cosine", "euclidean") for k in KS]
    lb, la = b.get("linear") or {}, a.get("linear") or {}
    diff += [f"{la['top1'] - lb['top1']:+.2f}" if la and lb else "—",
             f"{la['top5'] - lb['top5']:+.2f}" if la and lb else "—"]
    lines.append("| change | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def main() -> None:
    runs = Path("runs")
    out: dict = {"standard_runs": {}, "tuning": {}}
    for p in sorted(runs.glob("ft-*.json")):
        if p.name.endswith(".wall.json"):
            continue
        s = load(Path("runs") / p.stem / "results.json") or load(p)   # full summary of the run folder
        if s is None:
            continue
        wall = load(p.with_name(p.stem + ".wall.json")) or {}
        s.pop("config", None)
        s["wall_s"] = wall.get("wall_s")
        out["standard_runs"][p.stem] = s
        print(table(p.stem, s) + "\n")
    for p in sorted(runs.glob("tune-*.json")):
        if p.name.endswith(".wall.json"):
            continue
        s = load(Path("runs") / p.stem / "results.json") or load(p)
        if s is None:
            continue
        out["tuning"][p.stem] = {"before_knn_mean": knn_mean(s["before"]), "after_knn_mean": knn_mean(s["after"]),
                                 "before": s["before"], "after": s["after"], "evaluated_on": s.get("evaluated_on"),
                                 "collapsed": s.get("collapsed")}
    # summary: mean of the 12 kNN numbers and linear top-1, before -> after
    print("| run | epochs | kNN mean before | after | change | linear top-1 before | after | change |")
    print("|---|---|---|---|---|---|---|---|")
    for n, s in out["standard_runs"].items():
        b, a = s["before"], s["after"]
        lb, la = (b.get("linear") or {}).get("top1"), (a.get("linear") or {}).get("top1")
        lin = f"{lb:.2f} | {la:.2f} | {la - lb:+.2f}" if lb is not None and la is not None else "— | — | —"
        print(f"| {n} | {len(s.get('epochs') or [])} | {knn_mean(b):.2f} | {knn_mean(a):.2f} | "
              f"{knn_mean(a) - knn_mean(b):+.2f} | {lin} |")
    # control: the same encoders after 5 more epochs of their own pretraining (continue_pretrain.sh)
    out["continue_pretraining"] = {}
    for p in sorted(runs.glob("cont-*/eval.json")):
        m = p.parent.name[len("cont-"):]
        b, a = load(runs / f"pre-{m}" / "eval.json"), load(p)
        if b is None or a is None:
            continue
        out["continue_pretraining"][m] = {"before": b, "after": a}
        lb, la = b["linear"]["top1"], a["linear"]["top1"]
        print(f"| control: {m} pretraining continued | 5 | {knn_mean(b):.2f} | {knn_mean(a):.2f} | "
              f"{knn_mean(a) - knn_mean(b):+.2f} | {lb:.2f} | {la:.2f} | {la - lb:+.2f} |")
    print()
    if out["tuning"]:
        print("| tuning run (validation split) | kNN mean before | kNN mean after | change |")
        print("|---|---|---|---|")
        for n, t in out["tuning"].items():
            print(f"| {n} | {t['before_knn_mean']:.2f} | {t['after_knn_mean']:.2f} | "
                  f"{t['after_knn_mean'] - t['before_knn_mean']:+.2f} |")
        best = max(out["tuning"], key=lambda n: out["tuning"][n]["after_knn_mean"])
        out["selected"] = best
        print(f"\nselected by validation kNN mean: {best}")
    Path("results/finetune").mkdir(parents=True, exist_ok=True)
    Path("results/finetune/results.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
