"""Seconds per pretraining step on this CPU: convnet-small vs resnet18-cifar, 1 vs 2 threads.

Times the work of one `simxir pretrain` step (two simsiam-cifar views, SimSiam forward in bf16
autocast + channels_last as the engine does on AVX512-BF16 CPUs, backward, SGD step) on random
uint8 images, median of STEPS steps, and converts it to seconds per epoch of the 10k-image
CIFAR-10 subset. Ratios are measured in the same run (the CPU is shared, absolute times are noisy).
Usage: python benchmarks/experiments/time_step.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from simxir.augment import build_augment
from simxir.methods import CONFIGS, build_method
from simxir.models import build_backbone


def step_time(arch: str, batch: int, threads: int, steps: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = build_method("simsiam", build_backbone(arch), CONFIGS["simsiam"]())
    m = m.to(memory_format=torch.channels_last)
    aug = build_augment("simsiam-cifar", 32, (0.5,) * 3, (0.25,) * 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)
    ts = []
    for _ in range(steps):
        t = time.perf_counter()
        v1, v2 = aug.views(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m(v1.contiguous(memory_format=torch.channels_last),
                    v2.contiguous(memory_format=torch.channels_last))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    rows = []
    for arch, batch, threads in [("convnet-small", 256, 1), ("convnet-small", 256, 2),
                                 ("resnet18-cifar", 256, 1)]:
        s = step_time(arch, batch, threads, args.steps)
        rows.append({"arch": arch, "batch": batch, "threads": threads, "s_per_step": s,
                     "s_per_epoch_10k": s * 10000 / batch})
    base = rows[0]["s_per_step"]
    print("| arch | batch | threads | s/step | s/epoch (10k) | vs convnet-small 1 thread |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["ratio"] = r["s_per_step"] / base
        print(f"| {r['arch']} | {r['batch']} | {r['threads']} | {r['s_per_step']:.2f} | "
              f"{r['s_per_epoch_10k']:.0f} | {r['ratio']:.1f}x |")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
