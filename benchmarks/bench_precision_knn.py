"""Does bf16 autocast change what is learned? kNN accuracy after a short run, bf16 vs fp32.

Pretrains the same method/backbone on the shared CIFAR-10 subset with precision=bf16 and
precision=fp32 (channels_last both), for several seeds, then evaluates the exported encoders with
cosine kNN (simxir.eval; k=21 and the best of its default ks) on the subset's test split. The
spread over seeds is the run-to-run noise the bf16-fp32 difference is compared with. Prints a table
and one JSON object (--out DIR writes them).

    python benchmarks/bench_precision_knn.py                                # convnet-small, 1k subset
    python benchmarks/bench_precision_knn.py --data npz:../shared/data/cifar10-12k.npz \\
        --backbone resnet18-cifar --epochs 20 --seeds 0 1 2                  # the lead's longer run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("SIMXIR_QUIET", "1")

from simxir.data import load_dataset  # noqa: E402
from simxir.eval import evaluate_encoder  # noqa: E402
from simxir.train.assemble import build_config  # noqa: E402
from simxir.train.pretrain import run_pretrain  # noqa: E402
from timing import add_out, report  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="npz:../shared/data/cifar10-1k.npz")
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--backbone", default="convnet-small")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    add_out(ap)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    from simxir.augment import build_augment

    aug = build_augment("simsiam-cifar", ds.image_size, ds.mean, ds.std)
    rows = []
    for seed in args.seeds:
        for precision in ("bf16", "fp32"):
            cfg = build_config(args.method, None, [
                f"epochs={args.epochs}", f"batch_size={args.batch}", f"seed={seed}", f"backbone={args.backbone}",
                "augment=simsiam-cifar", f"precision={precision}", "channels_last=true", "tensorboard=false",
                "optim.lr=0.06", "monitor.every=1000"], data=args.data)
            with tempfile.TemporaryDirectory() as d:
                t = time.perf_counter()
                res = run_pretrain(cfg, d)
                secs = time.perf_counter() - t
                import torch

                from simxir.models import build_backbone
                enc = build_backbone(args.backbone)
                enc.load_state_dict(torch.load(f"{d}/encoder.pt", weights_only=True))
            ev = evaluate_encoder(enc.eval(), ds, aug, linear=False)
            knn = ev["knn"]["cosine"]
            best_k = max(knn, key=lambda k: knn[k])
            rows.append({"seed": seed, "precision": precision, "loss": res["epochs"][-1]["loss"],
                         "knn_cos_k21": knn.get("21", knn[best_k]), "knn_cos_best": knn[best_k],
                         "best_k": best_k, "collapsed": res["collapsed"], "seconds": round(secs, 1)})
            print(json.dumps(rows[-1]), flush=True)

    def mean(p, key):
        return statistics.mean(r[key] for r in rows if r["precision"] == p)

    def spread(p, key):
        v = [r[key] for r in rows if r["precision"] == p]
        return (max(v) - min(v)) if len(v) > 1 else 0.0

    out = {"data": args.data, "method": args.method, "backbone": args.backbone, "epochs": args.epochs,
           "seeds": args.seeds, "runs": rows}
    for key in ("knn_cos_k21", "knn_cos_best"):
        out[key] = {p: {"mean": round(mean(p, key), 4), "seed_spread": round(spread(p, key), 4)}
                    for p in ("bf16", "fp32")}
        out[key]["bf16_minus_fp32"] = round(mean("bf16", key) - mean("fp32", key), 4)
    lines = ["| seed | precision | loss | kNN cos (k=21) | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['seed']} | {r['precision']} | {r['loss']:.4f} | {r['knn_cos_k21']:.3f} | {r['seconds']} |"
              for r in rows]
    report("bench_precision_knn", out, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
