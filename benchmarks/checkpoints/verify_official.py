"""Verify simxir's ``moco`` and ``simsiam`` layouts against the official code (facebookresearch/moco
``moco/builder.py`` at 132aea9, the last commit that has it; facebookresearch/simsiam
``simsiam/builder.py``) in three stages, as verify_lightly.py (whose docstring says how to get
torchvision's model code beside the CPU build of torch):

    VENV=/tmp/venv-lightly   # torch + torchvision's Python files
    $VENV/bin/python benchmarks/checkpoints/verify_official.py source OUT SRC  # SRC/moco/moco/builder.py,
                                                                               # SRC/simsiam/simsiam/builder.py
    .venv/bin/python benchmarks/checkpoints/verify_official.py check OUT
    $VENV/bin/python benchmarks/checkpoints/verify_official.py roundtrip OUT SRC
    .venv/bin/python benchmarks/checkpoints/verify_official.py table OUT

``source`` builds MoCo v2 (``MoCo(resnet50, 128, mlp=True)``) and SimSiam (``SimSiam(resnet50,
2048, 512)``) with the official builders, fills the weights deterministically (fill.py), wraps the
model the way the scripts' DistributedDataParallel does (keys ``module.*``) and saves
``{"epoch", "arch", "state_dict", "optimizer"}`` as ``main_moco.py`` / ``main_simsiam.py`` do. The
reference features are the online encoder's with ``fc`` replaced by the identity (what a linear
probe reads, ``main_lincls.py``). Test fixtures (keys, shapes, features) go to
tests/models/fixtures/official/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import check_file, roundtrip_rows, run_stage, write_check, write_table  # noqa: E402
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "official"
SIZE = 64
LAYOUTS = {"moco-v2": "MoCo(resnet50, dim=128, K=65536, mlp=True) under DDP (official main_moco.py)",
           "simsiam": "SimSiam(resnet50, dim=2048, pred_dim=512) under DDP (official main_simsiam.py)"}


def _build(name: str, src: Path) -> nn.Module:
    import torchvision

    sys.path[:0] = [str(src / "moco"), str(src / "simsiam")]
    if name == "moco-v2":
        from moco.builder import MoCo

        return MoCo(torchvision.models.resnet50, 128, 65536, 0.999, 0.2, mlp=True)
    from simsiam.builder import SimSiam

    return SimSiam(torchvision.models.resnet50, 2048, 512)


def _online(model: nn.Module) -> nn.Module:
    return model.encoder_q if hasattr(model, "encoder_q") else model.encoder


class _DDPKeys(nn.Module):
    """DistributedDataParallel's state_dict keys (``module.*``) without a process group."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _features(model: nn.Module) -> torch.Tensor:
    enc = _online(model)
    fc, enc.fc = enc.fc, nn.Identity()
    enc.eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1)))
    enc.fc = fc
    return out


def source(out: Path, src: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, how in LAYOUTS.items():
        torch.manual_seed(0)
        model = _build(name, src)
        wrapped = _DDPKeys(model)
        shapes = [(k, list(v.shape)) for k, v in wrapped.state_dict().items()]
        wrapped.load_state_dict(fill(shapes))
        torch.save({"epoch": 1, "arch": "resnet50", "state_dict": wrapped.state_dict(), "optimizer": {}},
                   out / f"{name}.pth.tar")
        feats = _features(model)
        torch.save(feats, out / f"{name}.features.pt")
        (FIXTURES / f"{name}.json").write_text(json.dumps({
            "layout": name, "built_as": how, "top_level": ["arch", "epoch", "optimizer", "state_dict"],
            "keys": shapes, "input_size": SIZE, "input_seed": 1, "fill_seed": 0,
            "features": [[round(float(v), 7) for v in row] for row in feats]}))
        print(f"{name}: {len(shapes)} keys, features {tuple(feats.shape)}")


def check(out: Path) -> None:
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    write_check(out, [check_file(out, name, ".pth.tar", x)[0] for name in LAYOUTS])


def roundtrip(out: Path, src: Path) -> None:
    def strict_load(name: str) -> dict:
        model = _build(name, src)
        obj = torch.load(out / f"{name}.export.pth.tar", weights_only=True)
        _DDPKeys(model).load_state_dict(obj["state_dict"], strict=True)
        ref = torch.load(out / f"{name}.features.pt")
        return {"export_feature_difference": float((_features(model) - ref).abs().max())}

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    write_table(json.loads((out / "roundtrip.json").read_text()), "official", "official MoCo/SimSiam",
                "MoCo v2 and SimSiam checkpoints made by the official code")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
