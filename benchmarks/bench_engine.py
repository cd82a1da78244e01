"""Engine overhead and mixed-precision speed-up, as ratios measured in one run.

(a) the whole engine (uint8 batch indexing, on-device augmentation, probe, logging) vs. the bare
    forward+backward+step of the same method on pre-augmented tensors, same precision and layout:
    target >= 0.85.
(b) the engine's default (bf16 autocast + channels_last, where bf16 is supported) vs. the engine in
    eager float32 NCHW: target >= 2x on CPUs with AVX512-BF16/AMX and on GPUs.

Throughput is source images per second (each image gives two augmented views), the first
(warm-up) step excluded; with --repeats R each configuration is measured in R interleaved rounds
(timing.py: medians, ratios paired within a round; use --repeats 3 or more on a shared machine). Alternating the two
precisions step by step is NOT a fair way to cancel load drift on CPU: each switch between a
bf16 and an fp32 model made both many times slower here (oneDNN re-creates its kernels). Prints a table and
one JSON object; --out DIR also writes them (bench_engine.json, .md).

    python benchmarks/bench_engine.py                     # ResNet-18 CIFAR stem, SimSiam, batch 64
    python benchmarks/bench_engine.py --backbone convnet-small --batch 256 --steps 6
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from timing import add_out, collect, median, paired_ratio, report

os.environ.setdefault("SIMXIR_QUIET", "1")

from simxir.augment import build_augment  # noqa: E402
from simxir.data.dataset import ImageDataset, Split  # noqa: E402
from simxir.device import bf16_supported, default_device  # noqa: E402
from simxir.methods import build_method  # noqa: E402
from simxir.models import build_backbone  # noqa: E402
from simxir.train import TrainConfig, train  # noqa: E402
from simxir.train.config import MonitorConfig, OptimConfig  # noqa: E402

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _dataset(n: int, size: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)
    split = lambda k: Split(torch.randint(0, 256, (k, 3, size, size), dtype=torch.uint8, generator=g),  # noqa: E731
                            torch.randint(0, 10, (k,), generator=g))
    return ImageDataset("random", split(n), split(32), [str(i) for i in range(10)], MEAN, STD)


def _method(args):
    torch.manual_seed(0)
    return build_method(args.method, build_backbone(args.backbone), None)


def _bare_setup(args, amp: bool, channels_last: bool, device: torch.device):
    """A step function: forward + backward + SGD step of the method on fixed pre-augmented views."""
    method = _method(args).to(device)
    aug = build_augment(args.augment, args.size, MEAN, STD)
    x = _dataset(args.batch, args.size).train.images.to(device)
    v1, v2 = aug.views(x)
    if channels_last:
        method = method.to(memory_format=torch.channels_last)
        v1, v2 = (v.contiguous(memory_format=torch.channels_last) for v in (v1, v2))
    opt = torch.optim.SGD(method.parameters(), lr=0.01, momentum=0.9)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = method([v1, v2])
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        method.on_train_step_end(0, 100)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def bare(args, amp: bool, channels_last: bool, device: torch.device) -> float:
    step = _bare_setup(args, amp, channels_last, device)
    step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    return args.batch * args.steps / (time.perf_counter() - t)


def engine(args, precision: str, channels_last: bool, device: torch.device) -> float:
    """The engine's own training-loop throughput (its train_img_per_s), one epoch of steps + 1."""
    cfg = TrainConfig(epochs=1, batch_size=args.batch, precision=precision, channels_last=channels_last,
                      device=str(device), tensorboard=False, log_every=1000,
                      optim=OptimConfig(name="sgd", lr=0.01), monitor=MonitorConfig(eval_size=32))
    ds = _dataset(args.batch * (args.steps + 1), args.size)
    aug = build_augment(args.augment, args.size, MEAN, STD)
    with tempfile.TemporaryDirectory() as d:
        res = train(cfg, _method(args), ds, aug, d)
    return float(res["epochs"][0]["train_img_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18-cifar")
    ap.add_argument("--method", default="simsiam")
    ap.add_argument("--augment", default="simsiam-cifar")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1, help="rounds over all configurations (medians kept)")
    add_out(ap)
    args = ap.parse_args()
    device = default_device()
    bf16 = bf16_supported(device)
    configs = [
        ("bare fp32 NCHW", lambda: bare(args, False, False, device)),
        ("bare bf16 channels_last", lambda: bare(args, True, True, device)),
        ("engine default (bf16 channels_last)", lambda: engine(args, "bf16", True, device)),
        ("engine fp32 NCHW", lambda: engine(args, "fp32", False, device)),
    ]
    rounds = collect(dict(configs), args.repeats)
    r = {name: median(v) for name, v in rounds.items()}
    eng, eng32 = rounds["engine default (bf16 channels_last)"], rounds["engine fp32 NCHW"]
    result = {
        "device": str(device), "bf16_supported": bf16, "backbone": args.backbone, "method": args.method,
        "batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads(),
        "img_per_s": {k: round(v, 2) for k, v in r.items()},
        "a_engine_over_bare_bf16_cl": round(paired_ratio(eng, rounds["bare bf16 channels_last"]), 3),
        "b_engine_bf16_cl_over_engine_fp32_nchw": round(paired_ratio(eng, eng32), 3),
        "b_engine_bf16_cl_over_bare_fp32_nchw": round(paired_ratio(eng, rounds["bare fp32 NCHW"]), 3),
        "repeats": args.repeats,
        "targets": {"a": 0.85, "b": 2.0},
    }
    lines = ["| configuration | img/s |", "|---|---|"] + [f"| {name} | {v:.1f} |" for name, v in r.items()]
    lines += ["", f"(a) engine / bare, bf16 channels_last: {result['a_engine_over_bare_bf16_cl']:.3f} (target >= 0.85)",
              f"(b) engine bf16+CL / engine fp32 NCHW: {result['b_engine_bf16_cl_over_engine_fp32_nchw']:.3f} "
              f"(target >= 2)"]
    report("bench_engine", result, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
