"""Streaming loader benchmarks, as ratios measured in one run. Prints a table, then one JSON object
on the last line; with --out also writes results/stream/bench_stream.{json,md}.

(a) decode + two-view crop, images/s in one process (= per worker): simxir's streaming source
    (``simxir.data.crops.train_views``: decode, torchvision's RandomResizedCrop boxes, torch uint8
    antialiased bicubic resize, flip; uint8 out) vs the per-image reference pipeline solo-learn and
    lightly run in their workers (PIL full decode, then per view torchvision-style
    RandomResizedCrop(bicubic) + horizontal flip + ToTensor), on generated ImageNet-like JPEGs
    (500x375, quality 90). Target >= 1.3x. Also: cores needed per GPU at a stated step rate.
(b) end to end: the engine on the same small folder, streamed (default workers) vs in memory, with
    a small backbone; the streamed run's share of loop time spent waiting for data.

    python benchmarks/stream/bench_stream.py --images 256 --out results/stream
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("SIMXIR_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: the timing helper

from simxir.augment import ViewSpec  # noqa: E402
from simxir.data.crops import train_views, view_rng  # noqa: E402
from simxir.io import atomic_write_json  # noqa: E402
from timing import measure, median, paired_ratio  # noqa: E402


def make_folder(root: Path, n: int, seed: int = 0) -> list[Path]:
    """ImageNet-like JPEGs: smooth structure plus texture noise (~90-110 KB at 500x375, q90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        c = i % 4
        d = root / ("val" if (i // 4) % 8 == 0 else "train") / f"c{c}"
        d.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (12, 16, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)).astype(np.float32)
        x = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        p = d / f"{i:06d}.JPEG"
        Image.fromarray(x).save(p, quality=90)
        paths.append(p)
    return paths


def reference_views(path: Path, size: int, spec: ViewSpec) -> torch.Tensor:
    """solo-learn/lightly per-image pipeline: PIL decode, then per view RandomResizedCrop (bicubic),
    RandomHorizontalFlip, ToTensor (torchvision's algorithm, written out; torchvision itself does
    not import beside the CPU torch here)."""
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    out = []
    for _ in range(2):
        area = w * h
        for _ in range(10):
            target = area * random.uniform(*spec.scale)
            aspect = math.exp(random.uniform(math.log(spec.ratio[0]), math.log(spec.ratio[1])))
            cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top, left = random.randint(0, h - ch), random.randint(0, w - cw)
                break
        else:
            cw, ch, top, left = w, h, 0, 0
        v = im.crop((left, top, left + cw, top + ch)).resize((size, size), Image.Resampling.BICUBIC)
        if random.random() < 0.5:
            v = v.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        t = torch.from_numpy(np.array(v, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div(255)
        out.append(t)
    return torch.stack(out)


def bench_decode(paths: list[Path], size: int, repeats: int) -> dict:
    torch.set_num_threads(1)
    spec = ViewSpec(scale=(0.08, 1.0))
    fns = {
        "simxir": lambda i, p: train_views(p, [view_rng(0, 0, i, 0), view_rng(0, 0, i, 1)], size, [spec, spec]),
        "reference": lambda i, p: reference_views(p, size, spec),
    }
    ts = measure({name: (lambda fn=fn: [fn(i, p) for i, p in enumerate(paths)]) for name, fn in fns.items()}, repeats)
    return {"simxir_img_per_s": len(paths) / median(ts["simxir"]),
            "reference_img_per_s": len(paths) / median(ts["reference"]),
            "ratio": paired_ratio(ts["reference"], ts["simxir"])}


def bench_engine(root: Path, size: int, batch: int, epochs: int) -> dict:
    from simxir.train.assemble import build_config
    from simxir.train.pretrain import run_pretrain

    out = {}
    for mode in ("off", "on"):
        over = [f"image_size={size}", f"loader.stream={mode}", f"batch_size={batch}", f"epochs={epochs}",
                "backbone=resnet18-cifar", "tensorboard=false", "monitor.every=1000", "probe.enabled=false",
                "precision=fp32", "channels_last=false"]
        cfg = build_config("simsiam", None, over, f"folder:{root}")
        with tempfile.TemporaryDirectory() as d:
            res = run_pretrain(cfg, Path(d) / "run")
        last = res["epochs"][-1]   # the last epoch: workers warm
        out[mode] = {"img_per_s": last["train_img_per_s"], "data_wait_frac": last.get("data_wait_frac")}
    from simxir.data.stream import default_workers
    return {"memory_img_per_s": out["off"]["img_per_s"], "stream_img_per_s": out["on"]["img_per_s"],
            "ratio": out["on"]["img_per_s"] / out["off"]["img_per_s"],
            "stream_data_wait_frac": out["on"]["data_wait_frac"], "workers": default_workers(),
            "backbone": "resnet18-cifar", "image_size": size, "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engine-size", type=int, default=32)
    ap.add_argument("--engine-batch", type=int, default=32)
    ap.add_argument("--engine-epochs", type=int, default=2)
    ap.add_argument("--step-rate", type=float, default=1.5, help="8-GPU ResNet-50 optimizer steps/s at "
                    "global batch 2048 (256 per GPU) for the cores-per-GPU estimate")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        paths = make_folder(root, a.images)
        kb = float(np.mean([p.stat().st_size for p in paths]) / 1e3)
        dec = bench_decode(paths[: min(len(paths), 128)], a.size, a.repeats)
        eng = bench_engine(root, a.engine_size, a.engine_batch, a.engine_epochs)
    per_gpu = a.step_rate * 256
    result = {"images": a.images, "jpeg_kb": kb, "size": a.size, "decode": dec, "engine": eng,
              "cores_per_gpu": {"step_rate": a.step_rate, "img_per_s_per_gpu": per_gpu,
                                "cores": per_gpu / dec["simxir_img_per_s"],
                                "reference_cores": per_gpu / dec["reference_img_per_s"]},
              "cpu_count": os.cpu_count(), "torch": torch.__version__, "gpu": "not measured (no GPU here)"}
    table = "\n".join([
        "| measurement | simxir | reference / in-memory | ratio |",
        "|---|---|---|---|",
        f"| decode + 2 crops at {a.size}px, img/s per process (500x375 q90, {kb:.0f} KB) | "
        f"{dec['simxir_img_per_s']:.1f} | {dec['reference_img_per_s']:.1f} | {dec['ratio']:.2f}x |",
        f"| engine img/s, {eng['backbone']} {eng['image_size']}px batch {eng['batch']}, streamed ({eng['workers']} "
        f"workers) vs in memory | {eng['stream_img_per_s']:.1f} | {eng['memory_img_per_s']:.1f} | "
        f"{eng['ratio']:.2f}x |",
        f"| streamed: share of loop time waiting for data | {eng['stream_data_wait_frac']:.1%} | | |",
        f"| cores per GPU at {per_gpu:.0f} img/s per GPU (ResNet-50, {a.step_rate} steps/s x 256) | "
        f"{result['cores_per_gpu']['cores']:.1f} | {result['cores_per_gpu']['reference_cores']:.1f} | |",
    ])
    print(table)
    if a.out:
        Path(a.out).mkdir(parents=True, exist_ok=True)
        atomic_write_json(result, Path(a.out) / "bench_stream.json")
        (Path(a.out) / "bench_stream.md").write_text(table + "\n")
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
