"""Evaluate the pretraining runs of pretrain_all.sh and a random-init encoder; write the table.

Usage (repo root, after ``bash benchmarks/experiments/pretrain_all.sh``):
    OMP_NUM_THREADS=1 python benchmarks/experiments/pretrain_table.py [--linear-epochs 50]
For each ``runs/pre-NAME/encoder.safetensors`` it runs ``simxir eval --json`` once (cached in
``runs/pre-NAME/eval.json``), also for ``runs/random-convnet-small/encoder.safetensors`` (saved
here after ``torch.manual_seed(0)``), and writes ``results/pretrain/results.json`` and prints the
markdown tables used in ``results/pretrain/README.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

DATA = "npz:../shared/data/cifar10-12k.npz"
RUNS = ["byol", "byol-linear", "simsiam", "barlow_twins", "vicreg", "moco", "simclr", "bridge",
        "bridge-sg-nostd-ipred", "bridge-sg-nostd-ipred-nocov", "byol-linear-adamw", "byol-linear-lr0.02"]
KS = ["5", "7", "11", "15", "17", "21"]


def random_encoder(path: Path, seed: int = 0) -> None:
    """convnet-small as ``simxir pretrain seed=SEED`` initialises it (the runs' own starting point)."""
    import torch

    from simxir.models import build_backbone, save_encoder
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    save_encoder(build_backbone("convnet-small"), path)


def run_eval(encoder: Path, out: Path, linear_epochs: int) -> dict | None:
    if out.is_file():
        return json.loads(out.read_text())
    if not encoder.is_file():
        return None
    cmd = ["simxir", "eval", "--encoder", str(encoder), "--data", DATA,
           "--linear-epochs", str(linear_epochs), "--json"]
    print("+", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    res = json.loads(proc.stdout)
    out.write_text(json.dumps(res, indent=1))
    return res


def read_run(name: str, prefix: str = "pre") -> dict:
    d = Path("runs") / f"{prefix}-{name}"
    info: dict = {"run": name}
    pj = Path("runs") / f"{prefix}-{name}.json"
    wall = Path("runs") / f"{prefix}-{name}.wall.json"
    if wall.is_file():   # rc, wall_s ("run" there is the folder name; the table keys by NAME)
        info.update({k: v for k, v in json.loads(wall.read_text()).items() if k != "run"})
    if pj.is_file() and pj.read_text().strip():
        try:
            res = json.loads(pj.read_text())
            info["collapsed"] = res.get("collapsed")
            info["epochs"] = res.get("epochs")
        except json.JSONDecodeError:
            pass
    if "epochs" not in info and (d / "metrics.csv").is_file():
        with open(d / "metrics.csv") as f:
            info["epochs"] = list(csv.DictReader(f))
    cfg = d / "config.yaml"
    if cfg.is_file():
        info["config"] = cfg.read_text()
    return info


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f}"   # simxir eval reports percent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--linear-epochs", type=int, default=50)
    ap.add_argument("--prefix", default="pre", help="run folders runs/PREFIX-NAME (pre10: the 10-epoch runs)")
    ap.add_argument("--out", default="results/pretrain/results.json")
    ap.add_argument("--runs", default=None, help="comma-separated run names (default: the RUNS list)")
    ap.add_argument("--random-seed", type=int, default=0,
                    help="seed of the random-init encoder (the runs' seed: their initial weights)")
    args = ap.parse_args()
    names = [n for n in args.runs.split(",") if n] if args.runs else RUNS
    suffix = "" if args.random_seed == 0 else f"-s{args.random_seed}"
    rnd = Path(f"runs/random-convnet-small{suffix}/encoder.safetensors")
    random_encoder(rnd, args.random_seed)
    results = {"data": DATA, "random_init": run_eval(rnd, rnd.parent / "eval.json", args.linear_epochs),
               "runs": {}}
    for name in names:
        if not (Path("runs") / f"{args.prefix}-{name}").is_dir():
            continue
        info = read_run(name, args.prefix)
        info["eval"] = run_eval(Path("runs") / f"{args.prefix}-{name}" / "encoder.safetensors",
                                Path("runs") / f"{args.prefix}-{name}" / "eval.json", args.linear_epochs)
        results["runs"][name] = info
    Path("results/pretrain").mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))

    def row(label: str, ev: dict | None, extra: str) -> str:
        if ev is None:
            return f"| {label} | " + " | ".join(["—"] * 14) + f" | {extra} |"
        cos = [ev["knn"]["cosine"].get(k) for k in KS]
        euc = [ev["knn"]["euclidean"].get(k) for k in KS]
        lin = ev.get("linear") or {}
        return (f"| {label} | " + " | ".join(fmt(v) for v in cos + euc) +
                f" | {fmt(lin.get('top1'))} | {fmt(lin.get('top5'))} | {extra} |")

    print("| encoder | " + " | ".join(f"cos k={k}" for k in KS) + " | " +
          " | ".join(f"euc k={k}" for k in KS) + " | linear top-1 | linear top-5 | notes |")
    print("|" + "---|" * 16)
    print(row("random init", results["random_init"], ""))
    r_cos = max(results["random_init"]["knn"]["cosine"].values()) if results["random_init"] else None
    for name, info in results["runs"].items():
        ep = (info.get("epochs") or [{}])[-1]
        notes = []
        if info.get("rc") not in (None, 0):
            notes.append(f"exit {info['rc']}")
        if info.get("collapsed") is not None:
            notes.append("COLLAPSED" if info["collapsed"] else "not collapsed")
        if ep:
            for key in ("z_std", "feat_erank"):
                if ep.get(key) not in (None, ""):
                    notes.append(f"{key} {float(ep[key]):.3g}")
        if info.get("wall_s"):
            notes.append(f"{info['wall_s']} s")
        ev = info["eval"]
        if ev and r_cos is not None:
            best = max(ev["knn"]["cosine"].values())
            notes.append(f"best cos {best - r_cos:+.1f} vs random")
        print(row(name, ev, ", ".join(notes)))


if __name__ == "__main__":
    main()
