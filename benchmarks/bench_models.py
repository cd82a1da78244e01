"""Cost of simxir.models: strict checkpoint import vs a bare load, and backbone forward speed.

1. load: ``load_encoder`` (format detection, arch inference, strict shape checks, report) vs the
   baseline a user would write by hand -- ``torch.load(weights_only=True)`` + ``build_backbone`` +
   ``load_state_dict(strict=True)`` of an already-torchvision-named dict -- on the same files in
   the same run. Layouts: plain torchvision, and a solo-learn-style Lightning checkpoint holding
   backbone + momentum copy + heads (the baseline there also strips ``backbone.`` by hand).
2. forward: CPU images/s of ``convnet-small`` vs ``resnet18-cifar`` (eval mode, batch 32).

Prints two tables and one JSON object (--out DIR writes them). Ratios are what count (shared CPU).

    python benchmarks/bench_models.py [--repeats 5] [--threads N] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from simxir.models import build_backbone, load_encoder
from timing import add_out, measure, median, paired_ratio, report


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
            ts = measure({"base": base, "ours": lambda path=path: load_encoder(path)}, repeats)
            rows.append({"arch": arch, "layout": layout, "baseline_s": median(ts["base"]),
                         "load_encoder_s": median(ts["ours"]), "ratio": paired_ratio(ts["ours"], ts["base"])})
    return rows


def bench_forward(repeats: int) -> list[dict]:
    rows = []
    x = torch.randn(32, 3, 32, 32)
    models = {arch: build_backbone(arch).eval() for arch in ("resnet18-cifar", "convnet-small")}
    with torch.inference_mode():
        ts = measure({arch: lambda m=m: m(x) for arch, m in models.items()}, repeats)
    for arch, t in ts.items():
        rows.append({"arch": arch, "images_per_s": x.shape[0] / median(t),
                     "speedup_vs_resnet18_cifar": paired_ratio(ts["resnet18-cifar"], t)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    add_out(ap)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        load_rows = bench_load(Path(d), args.repeats)
    fwd_rows = bench_forward(args.repeats)
    lines = ["| arch | layout | baseline s | load_encoder s | ratio (paired) |", "|---|---|---|---|---|"]
    lines += [f"| {r['arch']} | {r['layout']} | {r['baseline_s']:.3f} | {r['load_encoder_s']:.3f} | {r['ratio']:.2f} |"
              for r in load_rows]
    lines += ["", "| arch (32x32, batch 32, CPU) | images/s | vs resnet18-cifar |", "|---|---|---|"]
    lines += [f"| {r['arch']} | {r['images_per_s']:.0f} | {r['speedup_vs_resnet18_cifar']:.1f}x |" for r in fwd_rows]
    report("bench_models", {"threads": torch.get_num_threads(), "repeats": args.repeats, "load": load_rows,
                            "forward": fwd_rows}, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
