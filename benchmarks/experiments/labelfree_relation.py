"""How the label-free numbers move with kNN accuracy (results/labelfree/README.md).

Stages (each skipped when its output exists, so the script resumes):

1. ``levels``: every encoder in ROOT/enc (labelfree_encoders.py: random init and 4 methods after
   1, 3, 8, 15 epochs): the label-free numbers on 1,000 CIFAR-10 train images (evenly spaced, the
   simsiam-cifar views) and kNN top-1 (cosine, k = 11, 10,000 train / 2,000 test images).
2. ``simxir``: each method's 15-epoch encoder fine-tuned with SimXIR (one round, SGD lr 5e-4, batch
   256, EPOCHS epochs) through ``run_finetune``: the paired before/after of both.
3. ``table``: Spearman's rho (and its p) of each number with kNN accuracy across encoders (levels),
   and of each change with the kNN change across pairs (pretraining epoch -> next snapshot, and
   SimXIR before -> after); writes OUT/relation.json and OUT/README.md.

    python benchmarks/experiments/labelfree_relation.py --root /work/runs-lf --out results/labelfree
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import numpy as np
import torch
from scipy.stats import spearmanr

from simxir.augment import build_augment
from simxir.data import open_dataset
from simxir.eval.features import dataset_features
from simxir.eval.knn import knn_classify
from simxir.eval.labelfree import BETTER, METRICS, LabelFreeConfig, evaluate_label_free
from simxir.finetune.run import build_finetune_config, run_finetune
from simxir.io import atomic_write_bytes, atomic_write_json, json_safe
from simxir.models import load_encoder
from simxir.protocol import EvalProtocol

K = 11


def levels(root: Path, data: str) -> None:
    ds = open_dataset(data)
    aug = build_augment("simsiam-cifar", ds.image_size, ds.mean, ds.std)
    (root / "eval").mkdir(exist_ok=True)
    for enc in sorted((root / "enc").glob("*.safetensors")):
        out = root / "eval" / f"{enc.stem}.json"
        if out.exists():
            continue
        model, _ = load_encoder(enc)
        summary, _, _ = evaluate_label_free(model, ds, aug, LabelFreeConfig())
        tr, ytr, te, yte = dataset_features(model, ds, aug)
        knn = knn_classify(tr, ytr, te, yte, ks=(K,), metrics=("cosine",), show_progress=False)
        atomic_write_json(json_safe({"encoder": enc.stem, "knn": knn["knn"]["cosine"][str(K)],
                                     "label_free": summary}), out)
        print(f"{enc.stem}: kNN {knn['knn']['cosine'][str(K)]:.2f}, RankMe {summary['rankme']:.1f}", flush=True)


def simxir(root: Path, data: str, epochs: int) -> None:
    for enc in sorted((root / "enc").glob("*-e15.safetensors")):
        run = root / f"ft-{enc.stem}"
        if (run / "results.json").exists():
            continue
        cfg = build_finetune_config(None, [f"epochs={epochs}", "batch_size=256", "augment=simsiam-cifar",
                                           "threads=1", "tensorboard=false", "precision=fp32"], data)
        protocol = EvalProtocol(knn_ks=(K,), linear=False, label_free=LabelFreeConfig())
        run_finetune(cfg, enc, run, resume=(run / "checkpoint.pt").exists(), protocol=protocol)


def _rho(x: list[float], y: list[float]) -> dict[str, float]:
    r = spearmanr(x, y)
    return {"rho": float(r.statistic), "p": float(r.pvalue), "n": len(x)}


def table(root: Path, out: Path) -> None:
    ev = {p.stem: json.loads(p.read_text()) for p in sorted((root / "eval").glob("*.json"))}
    knn = {k: v["knn"] for k, v in ev.items()}
    lvl = {m: _rho([v["label_free"][m] for v in ev.values()], list(knn.values())) for m in METRICS}
    trained = {k: v for k, v in ev.items() if not k.startswith("random")}
    lvl_trained = {m: _rho([v["label_free"][m] for v in trained.values()], [v["knn"] for v in trained.values()])
                   for m in METRICS}
    # changes: consecutive pretraining snapshots of each method, and SimXIR before -> after
    pairs = []
    for name in sorted(ev):
        method, _, e = name.rpartition("-e")
        nxt = sorted(int(n.rpartition("-e")[2]) for n in ev if n.startswith(method + "-e"))
        later = [x for x in nxt if x > int(e)]
        if method != "random" and later:
            a, b = ev[name], ev[f"{method}-e{later[0]}"]
            pairs.append({"pair": f"{name} -> e{later[0]}", "kind": "pretraining", "dknn": b["knn"] - a["knn"],
                          **{m: b["label_free"][m] - a["label_free"][m] for m in METRICS}})
    for res in sorted(root.glob("ft-*/results.json")):
        r = json.loads(res.read_text())
        ch = r["label_free_change"]
        dk = r["after"]["knn"]["cosine"][str(K)] - r["before"]["knn"]["cosine"][str(K)]
        pairs.append({"pair": res.parent.name, "kind": "simxir", "dknn": dk,
                      **{m: ch[m]["change"] for m in METRICS}, "verdicts": {m: ch[m]["verdict"] for m in METRICS}})
    chg = {m: _rho([p[m] for p in pairs], [p["dknn"] for p in pairs]) for m in METRICS}
    agree = {}
    for m in METRICS:   # how often the number moved the way the literature reads as better, with the kNN change
        sign = 1 if BETTER[m] == "higher" else -1
        agree[m] = {kind: int(sum(np.sign(sign * p[m]) == np.sign(p["dknn"]) for p in pairs if p["kind"] == kind))
                    for kind in ("pretraining", "simxir")}
    kinds = {kind: sum(p["kind"] == kind for p in pairs) for kind in ("pretraining", "simxir")}
    result = {"levels": lvl, "levels_trained": lvl_trained, "changes": chg, "sign_agreement": agree,
              "n_pairs": len(pairs), "pairs_by_kind": kinds, "knn_gains": int(sum(p["dknn"] > 0 for p in pairs)),
              "pairs": pairs,
              "encoders": {k: {"knn": v["knn"], **{m: v["label_free"][m] for m in METRICS}} for k, v in ev.items()}}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(json_safe(result), out / "relation.json")
    atomic_write_bytes(out / "README.md", _readme(result).encode())
    print(_readme(result))


def _readme(r: dict) -> str:
    kinds = r["pairs_by_kind"]
    lines = ["# Label-free numbers against kNN accuracy (CIFAR-10 12k subset, convnet-small)", "",
             "Made by `python benchmarks/experiments/labelfree_encoders.py --root ROOT` and",
             "`python benchmarks/experiments/labelfree_relation.py --root ROOT --out results/labelfree`.",
             "Files: README.md (these tables), relation.json (every number, the encoders' and the pairs').",
             f"Encoders: {len(r['encoders'])} (random init; SimSiam, BYOL, MoCo v2, SimCLR after 1, 3, 8, 15 epochs, "
             "seed 0, 32 px). Label-free numbers on 1,000 train images (`simxir.eval.labelfree`); kNN top-1 cosine "
             "k = 11 on the 2,000 test images (10,000 train images as the bank).",
             f"Changes: {r['n_pairs']} pairs: {kinds['pretraining']} pretraining snapshot -> the next, "
             f"{kinds['simxir']} SimXIR before -> after (one round of 10 epochs, SGD lr 5e-4, batch 256). "
             f"kNN rose in {r['knn_gains']} of the {r['n_pairs']} pairs, so the last column says which way each "
             "number moves when kNN rises, not whether it can tell a gain from a loss.", "",
             "| number | literature: better if | levels, 17 encoders: Spearman rho (p) | levels, trained encoders only "
             "(16) | changes: rho with the kNN change (p) | moved the 'better' way with a kNN gain: pretraining "
             "/ SimXIR |", "|---|---|---|---|---|---|"]
    for m in METRICS:
        lv, lt, ch, ag = r["levels"][m], r["levels_trained"][m], r["changes"][m], r["sign_agreement"][m]
        lines.append(f"| {m} | {BETTER[m]} | {lv['rho']:+.2f} ({lv['p']:.2g}) | {lt['rho']:+.2f} ({lt['p']:.2g}) | "
                     f"{ch['rho']:+.2f} ({ch['p']:.2g}) | {ag['pretraining']} of {kinds['pretraining']} / "
                     f"{ag['simxir']} of {kinds['simxir']} |")
    lines += ["", "Encoders (kNN top-1 %, then the label-free numbers):", "",
              "| encoder | kNN | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 2) + "|"]
    for k, v in r["encoders"].items():
        lines.append(f"| {k} | {v['knn']:.2f} | " + " | ".join(f"{v[m]:.4g}" for m in METRICS) + " |")
    lines += ["", "Changes:", "", "| pair | kind | kNN change | " + " | ".join(METRICS) + " |",
              "|---" * (len(METRICS) + 3) + "|"]
    for p in r["pairs"]:
        lines.append(f"| {p['pair']} | {p['kind']} | {p['dknn']:+.2f} | "
                     + " | ".join(f"{p[m]:+.4g}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--data", default="npz:../shared/data/cifar10-12k.npz")
    ap.add_argument("--out", default="labelfree_out")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--stages", default="levels,simxir,table")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = Path(args.root)
    stages = args.stages.split(",")
    if "levels" in stages:
        levels(root, args.data)
    if "simxir" in stages:
        simxir(root, args.data, args.epochs)
    if "table" in stages:
        table(root, Path(args.out))


if __name__ == "__main__":
    main()
