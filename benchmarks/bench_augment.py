"""Throughput of simxir.augment vs the per-image PIL pipeline of SimSiam/solo-learn (same run).

Two views of ``simsiam-cifar`` for a batch of uint8 32x32 images (real CIFAR-10 from
../shared/data when present, else random pixels). ``simxir`` is the default Augment (one intra-op
thread for small CPU batches), ``simxir_all_threads`` the same with torch's thread count.
Baselines, timed in the same process, runs interleaved:
  * pil:    torchvision-style per-image pipeline written with PIL + numpy (RandomResizedCrop,
            ColorJitter in random order, grayscale, flip, to-tensor, normalize), one image at a time;
  * kornia: kornia.augmentation's RandomResizedCrop/ColorJitter/RandomGrayscale/RandomHorizontalFlip/
            Normalize on the batch.
Also a per-op table (simxir vs kornia). Prints the tables, then one JSON object (timing.py's report).

    python benchmarks/bench_augment.py [--batch 256] [--repeats 5] [--threads N] [--out results/augment]
"""

from __future__ import annotations

import argparse
import math
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

from simxir.augment import build_augment, ops, params
from timing import add_out, measure, median, paired_ratio, report

MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
DATA = Path(__file__).resolve().parents[1] / "../shared/data/cifar10-1k.npz"
STEP_SECONDS = 1.1  # one ResNet-18 training step on 256 images on this CPU (engine's estimate)


def load_batch(n: int) -> tuple[torch.Tensor, str]:
    if DATA.exists():
        with np.load(DATA, allow_pickle=False) as z:
            x = z["x_train"][:n]
        reps = math.ceil(n / len(x))
        x = np.concatenate([x] * reps)[:n]
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), "cifar10-1k"
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), "random"


# ------------------------------------------------------------------ PIL per-image baseline

def _pil_rrc(img: Image.Image, size: int, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)) -> Image.Image:
    w, h = img.size
    area = w * h
    for _ in range(10):
        ta = area * random.uniform(*scale)
        ar = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(ta * ar)), round(math.sqrt(ta / ar))
        if 0 < cw <= w and 0 < ch <= h:
            i, j = random.randint(0, h - ch), random.randint(0, w - cw)
            return img.resize((size, size), Image.BILINEAR, box=(j, i, j + cw, i + ch))
    return img.resize((size, size), Image.BILINEAR)


def _pil_hue(img: Image.Image, factor: float) -> Image.Image:
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    with np.errstate(over="ignore"):
        np_h += np.uint8(int(factor * 255) % 256)
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), s, v)).convert("RGB")


def _pil_jitter(img: Image.Image, b=0.4, c=0.4, s=0.4, hue=0.1) -> Image.Image:
    steps = [lambda im: ImageEnhance.Brightness(im).enhance(random.uniform(1 - b, 1 + b)),
             lambda im: ImageEnhance.Contrast(im).enhance(random.uniform(1 - c, 1 + c)),
             lambda im: ImageEnhance.Color(im).enhance(random.uniform(1 - s, 1 + s)),
             lambda im: _pil_hue(im, random.uniform(-hue, hue))]
    random.shuffle(steps)
    for f in steps:
        img = f(img)
    return img


def pil_view(arr: np.ndarray, size: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    img = _pil_rrc(Image.fromarray(arr), size)
    if random.random() < 0.8:
        img = _pil_jitter(img)
    if random.random() < 0.2:
        img = img.convert("L").convert("RGB")
    if random.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
    return (x - mean) / std


def pil_views(x_nhwc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mean = np.array(MEAN, np.float32)[:, None, None]
    std = np.array(STD, np.float32)[:, None, None]
    size = x_nhwc.shape[1]
    v1 = torch.from_numpy(np.stack([pil_view(a, size, mean, std) for a in x_nhwc]))
    v2 = torch.from_numpy(np.stack([pil_view(a, size, mean, std) for a in x_nhwc]))
    return v1, v2


# ------------------------------------------------------------------ kornia baseline

def kornia_pipeline(size: int):
    import kornia.augmentation as K
    return torch.nn.Sequential(
        K.RandomResizedCrop((size, size), scale=(0.2, 1.0)),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomHorizontalFlip(),
        K.Normalize(torch.tensor(MEAN), torch.tensor(STD)),
    )


def per_op_table(x: torch.Tensor, repeats: int) -> list[dict]:
    import kornia.augmentation as K
    n, size = x.shape[0], x.shape[-1]
    xf = ops.to_float(x)
    boxes = params.crop_boxes(n, size, size, (0.2, 1.0), (3 / 4, 4 / 3))
    flip = params.bernoulli(n, 0.5)
    jit = params.jitter_params(n, 0.4, 0.4, 0.4, 0.1, p=0.8)
    gray = params.bernoulli(n, 0.2)
    every = torch.ones(n, dtype=torch.bool)
    sigma = params.uniform(n, 0.1, 2.0)
    kr = K.RandomResizedCrop((size, size), scale=(0.2, 1.0))
    kj = K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)
    kg = K.RandomGrayscale(p=0.2)
    kb = K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=1.0)
    ks = K.RandomSolarize(0.0, 0.0, p=1.0)
    rows = [
        ("resized_crop+flip", lambda: ops.resized_crop(xf, boxes, size, flip), lambda: kr(xf)),
        ("color_jitter p=0.8", lambda: ops.color_jitter(xf, *jit), lambda: kj(xf)),
        ("grayscale p=0.2", lambda: ops.grayscale(xf, gray), lambda: kg(xf)),
        ("gaussian_blur k=3 p=1", lambda: ops.gaussian_blur(xf, every, sigma, 3), lambda: kb(xf)),
        ("solarize p=1", lambda: ops.solarize(xf, every), lambda: ks(xf)),
    ]
    out = []
    for name, ours, theirs in rows:
        ts = measure({"simxir": ours, "kornia": theirs}, repeats)
        out.append({"op": name, "simxir_ms": median(ts["simxir"]) * 1e3, "kornia_ms": median(ts["kornia"]) * 1e3,
                    "speedup": paired_ratio(ts["kornia"], ts["simxir"])})
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    add_out(ap)
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    x, source = load_batch(args.batch)
    x_nhwc = x.permute(0, 2, 3, 1).contiguous().numpy()
    size = x.shape[-1]
    aug = build_augment("simsiam-cifar", size, MEAN, STD)  # auto: 1 thread for small CPU batches
    aug_all = build_augment("simsiam-cifar", size, MEAN, STD, cpu_threads=torch.get_num_threads())
    kp = kornia_pipeline(size)
    xf = ops.to_float(x)
    torch.manual_seed(0)
    random.seed(0)

    rounds = measure({"simxir": lambda: aug.views(x),
                      "simxir_all_threads": lambda: aug_all.views(x),
                      "kornia": lambda: (kp(xf), kp(xf)),
                      "pil_per_image": lambda: pil_views(x_nhwc)}, args.repeats)
    t = {k: median(v) for k, v in rounds.items()}
    t_ours = t["simxir"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per-op comparison at one thread: fair, and quick on a busy CPU
    ops_rows = per_op_table(x, args.repeats)
    torch.set_num_threads(threads)

    n2 = 2 * args.batch  # images produced per call (two views)
    result = {
        "recipe": "simsiam-cifar",
        "data": source,
        "batch": args.batch,
        "image_size": size,
        "torch_threads": torch.get_num_threads(),
        "seconds_two_views": t,
        "view_images_per_s": {k: n2 / v for k, v in t.items()},
        "speedup_vs_pil": paired_ratio(rounds["pil_per_image"], rounds["simxir"]),
        "speedup_vs_kornia": paired_ratio(rounds["kornia"], rounds["simxir"]),
        "speedup_of_auto_threads": paired_ratio(rounds["simxir_all_threads"], rounds["simxir"]),
        "fraction_of_1.1s_train_step": t_ours / STEP_SECONDS,
        "per_op": ops_rows,
    }
    lines = [f"augment benchmark: {args.batch} x {size}x{size} ({source}), two views of simsiam-cifar, "
             f"median of {args.repeats} interleaved rounds, {torch.get_num_threads()} torch threads", "",
             "| pipeline | s / 2 views | view imgs/s | vs simxir (paired) |", "|---|---|---|---|"]
    lines += [f"| {k} | {t[k]:.4f} | {n2 / t[k]:.0f} | {paired_ratio(rounds[k], rounds['simxir']):.1f}x |" for k in t]
    lines += ["", f"simxir two views = {100 * t_ours / STEP_SECONDS:.1f}% of a {STEP_SECONDS} s training step", "",
              "| op (batch, 1 thread) | simxir ms | kornia ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['op']} | {r['simxir_ms']:.2f} | {r['kornia_ms']:.2f} | {r['speedup']:.1f}x |" for r in ops_rows]
    report("bench_augment", result, "\n".join(lines), args.out)
    return result


if __name__ == "__main__":
    main()
