"""Evaluate one encoder for the converged-encoder experiment (results/finetune/converged) and keep
every test image's outcome, so that before/after changes can be paired image by image.

Writes OUT (JSON): kNN top-1 (majority vote, cosine and euclidean, k = 5..21) and the fast linear
probe's top-1/top-5 on the test split, the per-image correctness of each (bit-packed, base64), the
class geometry of the l2-normalised test features (within/between-class mean squared distance, the
dynamics lab's group metrics) and the wall time.

Usage: python benchmarks/experiments/converged_eval.py ENCODER DATA OUT [--linear-epochs 100]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from simxir.eval.features import encoder_features
from simxir.eval.knn import DEFAULT_KS, knn_predict
from simxir.eval.linear import LinearProbeConfig, linear_probe_logits
from simxir.eval.paired import pack_outcomes
from simxir.experiments.demo import class_geometry


def evaluate(encoder: str, data: str, linear_epochs: int) -> dict:
    start = time.time()
    tr, ytr, te, yte = encoder_features(encoder, data, None, None, False, None, None, 256, torch.device("cpu"))
    tr, te = tr.float(), te.float()
    pred = knn_predict(tr, ytr, te, ks=DEFAULT_KS, weighted_temperature=None, show_progress=False)["knn"]
    logits = linear_probe_logits(tr, ytr, te, yte, LinearProbeConfig(epochs=linear_epochs), show_progress=False)
    y = yte.numpy()
    out: dict = {"encoder": encoder, "data": data, "n_test": int(y.size), "linear_epochs": linear_epochs,
                 "knn": {}, "right": {"knn": {}}}
    for metric, by_k in pred.items():
        out["knn"][metric], out["right"]["knn"][metric] = {}, {}
        for k, p in by_k.items():
            right = p.numpy() == y
            out["knn"][metric][str(k)] = 100.0 * float(right.mean())
            out["right"]["knn"][metric][str(k)] = pack_outcomes(right)
    top5 = (logits.topk(5, dim=1).indices == yte[:, None]).any(dim=1).numpy()
    right = logits.argmax(dim=1).numpy() == y
    out["linear"] = {"top1": 100.0 * float(right.mean()), "top5": 100.0 * float(top5.mean())}
    out["right"]["linear"] = pack_outcomes(right)
    out["right"]["linear_top5"] = pack_outcomes(top5)
    out["geometry"] = class_geometry(te, yte)
    out["wall_s"] = time.time() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("encoder")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--linear-epochs", type=int, default=100)
    a = ap.parse_args()
    res = evaluate(a.encoder, a.data, a.linear_epochs)
    tmp = Path(a.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(res))
    os.replace(tmp, a.out)
    print(f"{a.out}: kNN cos k=11 {res['knn']['cosine']['11']:.2f}, linear {res['linear']['top1']:.2f}, "
          f"{res['wall_s']:.0f}s")


if __name__ == "__main__":
    main()
