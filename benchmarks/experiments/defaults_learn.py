"""Do the defaults learn? ``simxir pretrain --method M --data SPEC`` with no recipe, for every method.

Each method is trained with nothing but its defaults (TrainConfig's, then the method's own
``train_defaults``; ``epochs`` may be fixed with ``--epochs``), then its frozen backbone is scored by
cosine kNN (best of k = 5, 11, 21) on the test split against the random-init encoder of the same
seed (the run's own initial weights). A row passes when the run neither diverged nor collapsed (at
any epoch) and its kNN is at least ``--margin`` points above random init. Prints a table, then one
JSON object on the last line.

    python benchmarks/experiments/defaults_learn.py --data npz:../shared/data/cifar10-12k.npz --epochs 3
    python benchmarks/experiments/defaults_learn.py --data digits
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time

os.environ.setdefault("SIMXIR_QUIET", "1")

import torch  # noqa: E402

from simxir.augment import build_augment  # noqa: E402
from simxir.data import load_dataset  # noqa: E402
from simxir.errors import TrainingDiverged  # noqa: E402
from simxir.eval import evaluate_encoder  # noqa: E402
from simxir.methods import METHODS  # noqa: E402
from simxir.models import build_backbone  # noqa: E402
from simxir.train.assemble import build_config  # noqa: E402
from simxir.train.pretrain import run_pretrain  # noqa: E402

KS = (5, 11, 21)


def best_knn(backbone: torch.nn.Module, dataset, augment) -> float:
    res = evaluate_encoder(backbone, dataset, augment, knn_ks=KS, linear=False, weighted_temperature=None)
    return max(res["knn"]["cosine"].values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=None, help="default: the automatic length")
    ap.add_argument("--margin", type=float, default=1.0, help="kNN points above random init to pass")
    ap.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    ap.add_argument("--json-out", default=None, help="also write the JSON object here")
    args = ap.parse_args()

    root = args.out or tempfile.mkdtemp(prefix="simxir-defaults-")
    extra = ["tensorboard=false"] + ([f"epochs={args.epochs}"] if args.epochs else [])
    dataset = load_dataset(args.data)
    rows = []
    for name in args.methods.split(","):
        cfg = build_config(name, None, extra, data=args.data)
        augment = build_augment(cfg.augment, dataset.image_size, dataset.mean, dataset.std)
        torch.manual_seed(cfg.seed)
        random_knn = best_knn(build_backbone(cfg.backbone), dataset, augment)
        run = os.path.join(root, name)
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        row = {"method": name, "optim": cfg.optim.name, "lr": cfg.optim.lr, "random_knn": random_knn}
        try:
            res = run_pretrain(cfg, run)
        except TrainingDiverged as exc:
            row.update(status="DIVERGED", detail=str(exc), passed=False, seconds=time.perf_counter() - t0)
            rows.append(row)
            print(f"{name}: DIVERGED {exc}", flush=True)
            continue
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.backbone)
        backbone.load_state_dict(torch.load(os.path.join(run, "encoder.pt"), weights_only=True))
        knn = best_knn(backbone, dataset, augment)
        collapsed_epochs = [e["epoch"] for e in res["epochs"] if e.get("collapsed")]
        last = res["epochs"][-1]
        row.update(epochs=len(res["epochs"]), steps=last["step"], knn=knn, gain=knn - random_knn,
                   collapsed_epochs=collapsed_epochs, feat_erank=last.get("feat_erank"),
                   final_loss=last["loss"], seconds=time.perf_counter() - t0)
        row["passed"] = not collapsed_epochs and row["gain"] >= args.margin
        row["status"] = "ok" if row["passed"] else ("COLLAPSED" if collapsed_epochs else "below margin")
        rows.append(row)
        print(f"{name}: kNN {knn:.1f} vs random {random_knn:.1f} ({row['gain']:+.1f}), {row['status']}",
              flush=True)

    print(f"\ndefaults on {args.data}: best cosine kNN (k in {KS}) vs the random-init encoder, "
          f"pass = no divergence, no collapsed epoch, gain >= {args.margin}")
    print("| method | optimizer | epochs (steps) | random init | trained | gain | erank | status | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["status"] == "DIVERGED":
            print(f"| {r['method']} | {r['optim']} {r['lr']:g} | | {r['random_knn']:.1f} | | | | DIVERGED | "
                  f"{r['seconds']:.0f} |")
            continue
        print(f"| {r['method']} | {r['optim']} {r['lr']:g} | {r['epochs']} ({r['steps']}) | {r['random_knn']:.1f} | "
              f"{r['knn']:.1f} | {r['gain']:+.1f} | {r['feat_erank']:.1f} | {r['status']} | {r['seconds']:.0f} |")
    out = {"data": args.data, "epochs": args.epochs, "margin": args.margin, "ks": list(KS), "rows": rows,
           "all_passed": all(r["passed"] for r in rows), "threads": torch.get_num_threads()}
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(out, f, indent=2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
