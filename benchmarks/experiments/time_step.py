"""Seconds per pretraining step on this CPU: convnet-small vs resnet18-cifar, 1 vs 2 threads.

Times the work of one `simxir pretrain` step (two simsiam-cifar views, SimSiam forward in bf16
autocast + channels_last as the engine does on AVX512-BF16 CPUs, backward, SGD step) on random
uint8 images, median of STEPS interleaved rounds (timing.py), and converts it to seconds per epoch of the 10k-image
CIFAR-10 subset. Ratios are measured in the same run (the CPU is shared, absolute times are noisy).
Usage: python benchmarks/experiments/time_step.py [--steps 5] [--out results/pretrain]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # benchmarks/: the timing helper
from simxir.augment import build_augment  # noqa: E402
from simxir.methods import CONFIGS, build_method  # noqa: E402
from simxir.models import build_backbone  # noqa: E402
from timing import add_out, measure, median, paired_ratio, report  # noqa: E402


def step_fn(arch: str, batch: int, threads: int):  # noqa: ANN201
    """One training step of ``arch`` at ``batch``, run with ``threads`` intra-op threads."""
    torch.manual_seed(0)
    m = build_method("simsiam", build_backbone(arch), CONFIGS["simsiam"]())
    m = m.to(memory_format=torch.channels_last)
    aug = build_augment("simsiam-cifar", 32, (0.5,) * 3, (0.25,) * 3)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    x = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)

    def step() -> None:
        torch.set_num_threads(threads)
        v1, v2 = aug.views(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = m([v1.contiguous(memory_format=torch.channels_last),
                     v2.contiguous(memory_format=torch.channels_last)])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()

    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5, help="interleaved rounds (one step of each setting per round)")
    add_out(ap)
    args = ap.parse_args()
    settings = [("convnet-small", 256, 1), ("convnet-small", 256, 2), ("resnet18-cifar", 256, 1)]
    ts = measure({f"{a} b{b} t{t}": step_fn(a, b, t) for a, b, t in settings}, args.steps)
    base = ts["convnet-small b256 t1"]
    rows = []
    for (arch, batch, threads), t in zip(settings, ts.values(), strict=True):
        rows.append({"arch": arch, "batch": batch, "threads": threads, "s_per_step": median(t),
                     "s_per_epoch_10k": median(t) * 10000 / batch, "ratio": paired_ratio(t, base)})
    lines = ["| arch | batch | threads | s/step | s/epoch (10k) | vs convnet-small 1 thread |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['batch']} | {r['threads']} | {r['s_per_step']:.2f} | "
              f"{r['s_per_epoch_10k']:.0f} | {r['ratio']:.1f}x |" for r in rows]
    report("time_step", {"steps": args.steps, "rows": rows}, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
