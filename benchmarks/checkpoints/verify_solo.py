"""Verify simxir's ``solo-learn`` layout against solo-learn's own code (vturrisi/solo-learn at
9187ea3, its ``solo/`` tree on the path) and Lightning's own ``Trainer.save_checkpoint`` (what
solo-learn's Checkpointer calls), in the venv of verify_lightly.py plus
``pip install lightning omegaconf scipy scikit-learn einops`` and ``pip install --no-deps timm``:

    VENV=/tmp/venv-lightly
    $VENV/bin/python benchmarks/checkpoints/verify_solo.py source OUT SOLO_SRC   # SOLO_SRC/solo/...
    .venv/bin/python benchmarks/checkpoints/verify_solo.py check OUT
    $VENV/bin/python benchmarks/checkpoints/verify_solo.py roundtrip OUT SOLO_SRC
    .venv/bin/python benchmarks/checkpoints/verify_solo.py table OUT

Two models, built as solo-learn's tests build them (its ``gen_base_cfg``): BYOL on ``cifar10``
(solo-learn's CIFAR ResNet-18: 3x3 stem with padding 2, no max-pool; momentum backbone) and SimSiam
on an ImageNet-style dataset (torchvision's ResNet-18 stem). Weights from fill.py; the reference
features are ``model.backbone`` in eval mode. Test fixtures go to tests/models/fixtures/solo/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import check_file, roundtrip_rows, run_stage, write_check, write_table  # noqa: E402
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "solo"
LAYOUTS = {"byol-cifar": ("byol", "cifar10", 32), "simsiam-imagenet": ("simsiam", "custom", 64)}


def _build(name: str, src: Path):
    sys.path.insert(0, str(src))
    from omegaconf import OmegaConf
    from solo.methods import BYOL, SimSiam

    method, dataset, _ = LAYOUTS[name]
    cfg = OmegaConf.create({
        "name": name, "method": method, "backbone": {"name": "resnet18"},
        "data": {"dataset": dataset, "train_path": ".", "val_path": ".", "format": "image_folder",
                 "num_workers": 0, "num_large_crops": 2, "num_small_crops": 0, "num_classes": 10},
        "optimizer": {"name": "lars", "batch_size": 2, "lr": 0.3, "classifier_lr": 0.1, "weight_decay": 1e-5,
                      "kwargs": {"momentum": 0.9}},
        "scheduler": {"name": "warmup_cosine"}, "checkpoint": {"enabled": False},
        "auto_resume": {"enabled": False}, "max_epochs": 1, "devices": 1, "accelerator": "cpu", "num_nodes": 1,
        "momentum": {"base_tau": 0.99, "final_tau": 1.0},
        "method_kwargs": {"proj_output_dim": 256, "proj_hidden_dim": 512, "pred_hidden_dim": 512}})
    OmegaConf.set_struct(cfg, False)
    return (BYOL if method == "byol" else SimSiam)(cfg)


def _input(name: str) -> torch.Tensor:
    size = LAYOUTS[name][2]
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def _features(model, name: str) -> torch.Tensor:
    model.backbone.eval()
    with torch.no_grad():
        return model.backbone(_input(name))


def source(out: Path, src: Path) -> None:
    from lightning.pytorch import Trainer

    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in LAYOUTS:
        torch.manual_seed(0)
        model = _build(name, src)
        shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(fill(shapes))
        trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, max_epochs=1)
        trainer.strategy.connect(model)
        trainer.save_checkpoint(out / f"{name}.ckpt")   # what solo-learn's Checkpointer calls
        top = sorted(torch.load(out / f"{name}.ckpt", weights_only=False))
        feats = _features(model, name)
        torch.save(feats, out / f"{name}.features.pt")
        (FIXTURES / f"{name}.json").write_text(json.dumps({
            "layout": name, "top_level": top, "keys": shapes, "input_size": LAYOUTS[name][2],
            "input_seed": 1, "fill_seed": 0, "features": [[round(float(v), 7) for v in r] for r in feats]}))
        print(f"{name}: {len(shapes)} keys, top level {top}, conv1 {model.backbone.conv1}")


def check(out: Path) -> None:
    write_check(out, [check_file(out, name, ".ckpt", _input(name), "solo-learn")[0] for name in LAYOUTS])


def roundtrip(out: Path, src: Path) -> None:
    def strict_load(name: str) -> dict:
        model = _build(name, src)
        model.load_state_dict(torch.load(out / f"{name}.export.ckpt", weights_only=False)["state_dict"], strict=True)
        ref = torch.load(out / f"{name}.features.pt")
        return {"export_feature_difference": float((_features(model, name) - ref).abs().max())}

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    write_table(json.loads((out / "roundtrip.json").read_text()), "solo", "solo-learn",
                "solo-learn checkpoints made by solo-learn's and Lightning's own code")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
