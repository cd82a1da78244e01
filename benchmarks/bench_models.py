"""Cost of simxir.models: strict checkpoint import vs a bare load, and backbone forward speed.

1. load: ``load_encoder`` (format detection, arch inference, strict shape checks, report) vs the
   baseline a user would write by hand -- ``torch.load(weights_only=True)`` + ``build_backbone`` +
   ``load_state_dict(strict=True)`` of an already-torchvision-named dict -- on the same files in
   the same run. Layouts: plain torchvision, and a solo-learn-style Lightning checkpoint holding
   backbone + momentum copy + heads (the baseline there also strips ``backbone.`` by hand).
2. forward: CPU images/s of ``convnet-small`` vs ``resnet18-cifar`` (eval mode, batch 32).

Prints two tables, then one JSON object on the last line. Ratios are what count (shared CPU).

    python benchmarks/bench_models.py [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from simxir.models import build_backbone, load_encoder


def timed(fn, repeats: int) -> float:
    return timed_pair(fn, None, repeats)[0]


def timed_pair(fa, fb, repeats: int) -> tuple[float, float]:
    """Median seconds of fa and fb, interleaved (a, b, a, b, ...) so CPU contention hits both."""
    fa()
    if fb is not None:
        fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, out in ((fa, ta), (fb, tb)):
            if fn is None:
                continue
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return statistics.median(ta), (statistics.median(tb) if tb else float("nan"))


def bench_load(tmp: Path, repeats: int) -> list[dict]:
    rows = []
    for arch in ("resnet18", "resnet50"):
        sd = build_backbone(arch).state_dict()
        plain, solo = tmp / f"{arch}.pth", tmp / f"{arch}-solo.ckpt"
        torch.save(sd, plain)
        other = {f"momentum_backbone.{k}": v.clone() for k, v in sd.items()}
        torch.save({"state_dict": {**{f"backbone.{k}": v for k, v in sd.items()}, **other,
                                   "projector.0.weight": torch.randn(2048, sd["layer4.1.bn2.weight"
                                   if arch == "resnet18" else "layer4.2.bn3.weight"].numel())},
                    "epoch": 1}, solo)

        def base_plain(arch=arch, plain=plain):
            m = build_backbone(arch)
            m.load_state_dict(torch.load(plain, map_location="cpu", weights_only=True), strict=True)

        def base_solo(arch=arch, solo=solo):
            m = build_backbone(arch)
            s = torch.load(solo, map_location="cpu", weights_only=True)["state_dict"]
            m.load_state_dict({k.removeprefix("backbone."): v for k, v in s.items()
                               if k.startswith("backbone.")}, strict=True)

        for layout, path, base in (("torchvision", plain, base_plain), ("solo-learn", solo, base_solo)):
            t_base, t_ours = timed_pair(base, lambda path=path: load_encoder(path), repeats)
            rows.append({"arch": arch, "layout": layout, "baseline_s": t_base, "load_encoder_s": t_ours,
                         "ratio": t_ours / t_base})
    return rows


def bench_forward(repeats: int) -> list[dict]:
    rows = []
    x = torch.randn(32, 3, 32, 32)
    speeds = {}
    for arch in ("resnet18-cifar", "convnet-small"):
        m = build_backbone(arch).eval()
        with torch.inference_mode():
            t = timed(lambda m=m: m(x), repeats)
        speeds[arch] = x.shape[0] / t
    for arch, ips in speeds.items():
        rows.append({"arch": arch, "images_per_s": ips,
                     "speedup_vs_resnet18_cifar": ips / speeds["resnet18-cifar"]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        load_rows = bench_load(Path(d), args.repeats)
    fwd_rows = bench_forward(args.repeats)
    print(f"{'arch':<10} {'layout':<12} {'baseline s':>11} {'load_encoder s':>15} {'ratio':>6}")
    for r in load_rows:
        print(f"{r['arch']:<10} {r['layout']:<12} {r['baseline_s']:>11.3f} {r['load_encoder_s']:>15.3f} "
              f"{r['ratio']:>6.2f}")
    print()
    print(f"{'arch (32x32, batch 32, CPU)':<28} {'images/s':>10} {'vs resnet18-cifar':>18}")
    for r in fwd_rows:
        print(f"{r['arch']:<28} {r['images_per_s']:>10.0f} {r['speedup_vs_resnet18_cifar']:>17.1f}x")
    print(json.dumps({"benchmark": "models", "threads": torch.get_num_threads(), "load": load_rows,
                      "forward": fwd_rows}))


if __name__ == "__main__":
    main()
