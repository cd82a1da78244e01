"""Step losses of fixed short two-view runs of every method (and the linear protocol), recorded
bit-exactly (float.hex) so that a change to how views reach the methods can be held to them.

    python benchmarks/two_view_reference.py --out tests/train/two_view_reference.json   # record
    python benchmarks/two_view_reference.py --check tests/train/two_view_reference.json # compare

The runs: each pretraining method on the embedded digits (in memory, convnet-small, 1 epoch of
batch 128), BYOL on a generated JPEG folder (streamed, 0 workers), SimXIR's standard, symmetric
and raw-anchor variants from a fixed random encoder, and the linear protocol's probe on digits.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simxir.train.assemble import build_config, build_model, open_run_data
from simxir.train.engine import train

PRETRAIN = ("simsiam", "byol", "moco", "simclr", "barlow_twins", "vicreg", "bridge")
COMMON = ["epochs=1", "batch_size=128", "precision=fp32", "channels_last=false", "device=cpu",
          "monitor.every=1", "monitor.eval_size=64", "logging.backends=[csv]", "tensorboard=false",
          "log_every=1", "threads=1", "backbone=convnet-small"]


def _jpeg_folder(root: Path, n_per_class: int = 24) -> Path:
    from PIL import Image  # noqa: PLC0415

    rng = np.random.default_rng(0)
    for c in range(2):
        d = root / "train" / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            a = rng.integers(0, 256, (40 + 4 * (i % 3), 44, 3), dtype=np.uint8)
            Image.fromarray(a).save(d / f"{i}.jpg", quality=90)
    return root


def _run(name: str, overrides: list[str], tmp: Path, data: str = "digits") -> list[str]:
    cfg = build_config(name, None, COMMON + overrides, data=data)
    run = open_run_data(cfg, tmp / "data")
    method = build_model(cfg)
    result = train(cfg, method, run.dataset, run.augment, tmp / "run", device=run.device)
    return [float(r["loss"]).hex() for r in result["steps"]]


def _protocol(tmp: Path) -> list[str]:
    from simxir.protocol.linear import ProtocolConfig, protocol_probe  # noqa: PLC0415

    cfg = build_config("simsiam", None, COMMON)
    run = open_run_data(cfg, tmp / "data")
    method = build_model(cfg)
    pcfg = ProtocolConfig(epochs=2, batch_size=128)
    out = protocol_probe(method.backbone, run.dataset, run.augment, pcfg)
    return [float(out["top1"]).hex(), float(out["top5"]).hex()]


def record() -> dict[str, Any]:
    torch.set_num_threads(1)
    runs: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for name in PRETRAIN:
            runs[name] = _run(name, [], tmp / name)
        folder = _jpeg_folder(tmp / "jpegs")
        runs["byol-streamed"] = _run("byol", ["image_size=32", "batch_size=16", "loader.workers=0"],
                                     tmp / "byol-streamed", data=f"folder:{folder}")
        for variant, ovr in (("simxir", []), ("simxir-symmetric", ["method.symmetric=true"]),
                             ("simxir-raw-anchor", ["method.variant=raw-anchor"])):
            runs[variant] = _run("simxir", ovr, tmp / variant)
        runs["linear-protocol"] = _protocol(tmp / "protocol")
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine(), "runs": runs}


def compare(ref: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Names of the runs whose losses differ in any bit."""
    return [k for k in ref["runs"] if ref["runs"][k] != now["runs"].get(k)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the record here")
    ap.add_argument("--check", help="compare with this record")
    args = ap.parse_args()
    now = record()
    if args.out:
        Path(args.out).write_text(json.dumps(now, indent=1) + "\n")
    if args.check:
        bad = compare(json.loads(Path(args.check).read_text()), now)
        print(json.dumps({"differ": bad, "runs": len(now["runs"])}))
        return 1 if bad else 0
    if not args.out:
        print(json.dumps(now))
    return 0


if __name__ == "__main__":
    sys.exit(main())
