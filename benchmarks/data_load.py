"""Data loading costs, each against a baseline measured in the same run (ratios are what count).

1. restricted unpickler vs plain ``pickle.loads`` on a full-size CIFAR-10 batch (10000 x 3072);
2. histogram-based ``channel_stats`` vs the naive ``x.float().div(255).mean/std`` on 10000 images;
3. ImageFolder decode with a thread pool vs one thread (PNG files written from the real data,
   or random pixels when ../shared/data is absent);
4. ``load_dataset("npz:...cifar10-12k.npz")`` wall time (absolute, for reference).

Run: python benchmarks/data_load.py [--n-folder 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from simxir.data import channel_stats, load_dataset
from simxir.data.folder import load_folder
from simxir.data.safe_pickle import safe_loads

SHARED = Path(__file__).resolve().parents[1] / "../shared/data"


def best(fn, repeats: int) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-folder", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    batch = pickle.dumps({b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                          b"labels": [int(v) for v in rng.integers(0, 10, 10000)]}, protocol=2)
    base = best(lambda: pickle.loads(batch, encoding="bytes"), a.repeats)
    ours = best(lambda: safe_loads(batch, "bench"), a.repeats)
    rows.append(("unpickle CIFAR batch (restricted vs pickle)", ours, base))

    x = torch.from_numpy(rng.integers(0, 256, (10000, 3, 32, 32), dtype=np.uint8))

    def naive() -> None:
        f = x.float().div(255)
        f.mean(dim=(0, 2, 3)), f.std(dim=(0, 2, 3))

    base = best(naive, a.repeats)
    ours = best(lambda: channel_stats(x), a.repeats)
    rows.append(("mean/std 10000x3x32x32 (histogram vs naive f32)", ours, base))

    npz = SHARED / "cifar10-1k.npz"
    if npz.is_file():
        with np.load(npz) as z:
            imgs = np.concatenate([z["x_train"], z["x_train"]])[: a.n_folder]
            labels = np.concatenate([z["y_train"], z["y_train"]])[: a.n_folder]
    else:
        imgs = rng.integers(0, 256, (a.n_folder, 32, 32, 3), dtype=np.uint8)
        labels = np.arange(a.n_folder) % 10
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        val = np.concatenate([np.flatnonzero(labels == c)[:2] for c in np.unique(labels)])
        for split, sl in (("train", slice(None)), ("val", val)):
            for i, (im, lab) in enumerate(zip(imgs[sl], labels[sl])):
                d = Path(tmp) / split / f"c{lab}"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(im).save(d / f"{i}.png")
        os.environ["SIMXIR_QUIET"] = "1"
        workers = max(1, min(8, os.cpu_count() or 1))
        base = best(lambda: load_folder(tmp, workers=1), a.repeats)
        ours = best(lambda: load_folder(tmp, workers=workers), a.repeats)
    rows.append((f"folder decode {len(imgs)} PNG ({workers} threads vs 1)", ours, base))

    big = SHARED / "cifar10-12k.npz"
    npz_s = best(lambda: load_dataset(f"npz:{big}"), a.repeats) if big.is_file() else None

    print(f"{'measurement':58s} {'ours s':>9s} {'base s':>9s} {'ratio':>7s}")
    for name, o, b in rows:
        print(f"{name:58s} {o:9.4f} {b:9.4f} {o / b:7.2f}")
    if npz_s is not None:
        print(f"{'load_dataset npz cifar10-12k (10000+2000 imgs, incl. stats)':58s} {npz_s:9.4f}")
    print(json.dumps({"benchmark": "data_load", "cpus": os.cpu_count(),
                      "rows": [{"name": n, "ours_s": o, "baseline_s": b, "ratio": o / b} for n, o, b in rows],
                      "npz_cifar10_12k_s": npz_s}))


if __name__ == "__main__":
    main()
