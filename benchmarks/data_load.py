"""Data loading costs, each against a baseline measured in the same run (ratios are what count).

1. restricted unpickler vs plain ``pickle.loads`` on a full-size CIFAR-10 batch (10000 x 3072);
2. histogram-based ``channel_stats`` vs the naive ``x.float().div(255).mean/std`` on 10000 images;
3. ImageFolder decode with a thread pool vs one thread (PNG files written from the real data,
   or random pixels when ../shared/data is absent);
4. ``load_dataset("npz:...cifar10-12k.npz")`` wall time (absolute, for reference).

Run: python benchmarks/data_load.py [--n-folder 1000] [--repeats 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
from pathlib import Path

import numpy as np
import torch

from simxir.data import channel_stats, load_dataset
from simxir.data.folder import load_folder
from simxir.data.safe_pickle import safe_loads
from timing import add_out, measure, median, paired_ratio, report

SHARED = Path(__file__).resolve().parents[1] / "../shared/data"


def pair(ours, base, repeats: int) -> tuple[list[float], list[float]]:  # noqa: ANN001
    ts = measure({"ours": ours, "base": base}, repeats)
    return ts["ours"], ts["base"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-folder", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    add_out(ap)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []

    batch = pickle.dumps({b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                          b"labels": [int(v) for v in rng.integers(0, 10, 10000)]}, protocol=2)
    rows.append(("unpickle CIFAR batch (restricted vs pickle)",
                 *pair(lambda: safe_loads(batch, "bench"), lambda: pickle.loads(batch, encoding="bytes"), a.repeats)))

    x = torch.from_numpy(rng.integers(0, 256, (10000, 3, 32, 32), dtype=np.uint8))

    def naive() -> None:
        f = x.float().div(255)
        f.mean(dim=(0, 2, 3)), f.std(dim=(0, 2, 3))

    rows.append(("mean/std 10000x3x32x32 (histogram vs naive f32)", *pair(lambda: channel_stats(x), naive, a.repeats)))

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
        folder = pair(lambda: load_folder(tmp, workers=workers), lambda: load_folder(tmp, workers=1), a.repeats)
    rows.append((f"folder decode {len(imgs)} PNG ({workers} threads vs 1)", *folder))

    big = SHARED / "cifar10-12k.npz"
    npz_s = median(measure({"npz": lambda: load_dataset(f"npz:{big}")}, a.repeats)["npz"]) if big.is_file() else None

    lines = ["| measurement | ours s | base s | ratio (paired) |", "|---|---|---|---|"]
    lines += [f"| {name} | {median(o):.4f} | {median(b):.4f} | {paired_ratio(o, b):.2f} |" for name, o, b in rows]
    if npz_s is not None:
        lines.append(f"| load_dataset npz cifar10-12k (10000+2000 imgs, incl. stats) | {npz_s:.4f} | | |")
    report("data_load", {"cpus": os.cpu_count(), "repeats": a.repeats,
                         "rows": [{"name": n, "ours_s": median(o), "baseline_s": median(b),
                                   "ratio": paired_ratio(o, b)} for n, o, b in rows],
                         "npz_cifar10_12k_s": npz_s}, "\n".join(lines), a.out)


if __name__ == "__main__":
    main()
