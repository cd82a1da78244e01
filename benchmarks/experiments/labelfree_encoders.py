"""Encoders at several levels of training, for the label-free metrics' relation to kNN accuracy
(results/labelfree/README.md): each method pretrained on the CIFAR-10 12k subset (convnet-small,
simsiam-cifar augmentation, the method's own defaults otherwise), its backbone saved after the
epochs in ``--snapshots``; plus the random initialisation.

    python benchmarks/experiments/labelfree_encoders.py --root /work/runs-lf [--methods simsiam,byol]

Writes ROOT/enc/<method>-e<epoch>.safetensors (and random-e0.safetensors); a method whose last
snapshot exists is skipped, so the script can be rerun after an interruption.
"""

from __future__ import annotations

import argparse
import sys
from copy import deepcopy
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import torch

from simxir.augment import build_augment
from simxir.data import open_dataset
from simxir.methods import build_method
from simxir.models import build_backbone, save_encoder
from simxir.train import train
from simxir.train.assemble import build_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--data", default="npz:../shared/data/cifar10-12k.npz")
    ap.add_argument("--methods", default="simsiam,byol,moco,simclr")
    ap.add_argument("--snapshots", default="1,3,8,15")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    snaps = sorted({int(s) for s in args.snapshots.split(",")})
    enc = Path(args.root) / "enc"
    enc.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for name in args.methods.split(","):
        if (enc / f"{name}-e{snaps[-1]}.safetensors").exists():
            continue
        cfg = build_config(name, None, [f"epochs={snaps[-1]}", "backbone=convnet-small", "augment=simsiam-cifar",
                                        f"seed={args.seed}", "threads=1", "tensorboard=false",
                                        "monitor.save_predictor=false", "precision=fp32"], args.data)
        ds = open_dataset(cfg.data)
        aug = build_augment(cfg.augment, ds.image_size, ds.mean, ds.std)
        torch.manual_seed(cfg.seed)
        backbone = build_backbone(cfg.backbone)
        if not (enc / "random-e0.safetensors").exists():
            save_encoder(backbone, enc / "random-e0.safetensors")
        method = build_method(name, backbone, dict(cfg.method))

        def snapshot(epoch: int, _metrics: dict, method=method, name=name) -> None:
            if epoch in snaps:
                copy = deepcopy(method.backbone).cpu().float().to(memory_format=torch.contiguous_format)
                save_encoder(copy, enc / f"{name}-e{epoch}.safetensors")

        train(cfg, method, ds, aug, Path(args.root) / f"pre-{name}", callbacks=(snapshot,))
        print(f"{name}: snapshots {snaps} in {enc}", flush=True)


if __name__ == "__main__":
    main()
