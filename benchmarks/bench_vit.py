"""The ViT training step: ``scaled_dot_product_attention`` vs written-out softmax attention, in fp32
and bf16 autocast, and the engine vs the bare step (target >= 0.9), in one run (ratios).

Configuration: SimSiam on vit-tiny-cifar (patch 4 at 32 px: 65 tokens), batch 64, SGD. The bare
step is forward + backward + SGD on fixed pre-augmented views; the engine is ``simxir.train.train``
for one epoch of ``steps + 1`` steps (its own augmentation, logging and checkpoint), img/s from its
epoch metrics. Rounds are interleaved; each ratio is the median over rounds of the ratio within a
round (the machine drifts between rounds), img/s the best of ``--repeats``. bf16 is measured only
where the CPU has it natively (emulated bf16 is many times slower and says nothing; ``--bf16`` forces it).

    python benchmarks/bench_vit.py --repeats 5 --out results/vit
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from simxir.augment import build_augment
from simxir.data.dataset import ImageDataset, Split
from simxir.methods import build_method
from simxir.models import build_backbone
from simxir.train import TrainConfig, train
from simxir.train.config import MonitorConfig, OptimConfig, ViTConfig
from timing import collect, median, paired_ratio

SIZE, BATCH, ARCH = 32, 64, "vit-tiny-cifar"
HEADS = {"proj_hidden": 512, "proj_dim": 128, "pred_hidden": 64}
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _dataset(n: int) -> ImageDataset:
    g = torch.Generator().manual_seed(0)

    def split(k: int) -> Split:
        return Split(torch.randint(0, 256, (k, 3, SIZE, SIZE), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (k,), generator=g))

    return ImageDataset("random", split(n), split(32), [str(i) for i in range(10)], MEAN, STD)


def _method(attn: str):
    torch.manual_seed(0)
    return build_method("simsiam", build_backbone(ARCH, attn=attn), dict(HEADS))


def bare(attn: str, precision: str, steps: int) -> float:
    m = _method(attn)
    aug = build_augment("simsiam-cifar", SIZE, MEAN, STD)
    v1, v2 = aug.views(_dataset(BATCH).train.images)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    ac = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step() -> None:
        with ac:
            out = m([v1, v2])
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return BATCH * steps / (time.perf_counter() - t)


def engine(steps: int) -> float:
    cfg = TrainConfig(epochs=1, batch_size=BATCH, precision="fp32", channels_last=False, device="cpu",
                      tensorboard=False, log_every=10, backbone=ARCH, vit=ViTConfig(),
                      optim=OptimConfig(name="sgd", lr=0.01), monitor=MonitorConfig(eval_size=32))
    aug = build_augment("simsiam-cifar", SIZE, MEAN, STD)
    with tempfile.TemporaryDirectory() as d:
        res = train(cfg, _method("sdpa"), _dataset(BATCH * (steps + 1)), aug, d)
    return float(res["epochs"][0]["train_img_per_s"])


def _bf16_native() -> bool:
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="results/vit")
    ap.add_argument("--bf16", action="store_true", help="measure bf16 also where it is emulated")
    a = ap.parse_args()
    os.environ.setdefault("SIMXIR_QUIET", "1")
    native = _bf16_native()
    # bf16 without native support is emulated (many times slower): it is measured only where native
    precisions = ("fp32", "bf16") if native or a.bf16 else ("fp32",)
    candidates = {f"bare {attn} {precision}": (lambda attn=attn, precision=precision: bare(attn, precision, a.steps))
                  for precision in precisions for attn in ("sdpa", "softmax")}
    candidates["engine sdpa fp32"] = lambda: engine(a.steps)
    runs = collect(candidates, a.repeats)
    best = {k: median(v) for k, v in runs.items()}

    def paired(num: str, den: str) -> float:
        return paired_ratio(runs[num], runs[den])

    ratios = {f"sdpa/softmax {p}": paired(f"bare sdpa {p}", f"bare softmax {p}") for p in precisions}
    ratios["engine/bare fp32"] = paired("engine sdpa fp32", "bare sdpa fp32")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"config": {"arch": ARCH, "method": "simsiam", "heads": HEADS, "batch": BATCH, "size": SIZE,
                      "steps": a.steps, "repeats": a.repeats, "threads": torch.get_num_threads(),
                      "bf16_native": native, "precisions": list(precisions)},
           "img_per_s": best, "img_per_s_rounds": runs, "ratios": ratios, "target": "engine/bare >= 0.9"}
    (out / "results.json").write_text(json.dumps(res, indent=1))
    lines = ["| measurement | img/s (median of rounds) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in best.items()]
    lines += ["", "| ratio (median over rounds of the ratio within a round) | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    (out / "README.md").write_text("# ViT training step on the CPU\n\n`python benchmarks/bench_vit.py "
                                   f"--steps {a.steps} --repeats {a.repeats} --out {a.out}` ({ARCH}, SimSiam, "
                                   f"batch {BATCH}, {SIZE} px; nothing else running). bf16 native: {native}"
                                   + ("" if "bf16" in precisions else " (bf16 not measured: emulated here)")
                                   + ".\n\n" + "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
