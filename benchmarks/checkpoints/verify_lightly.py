"""Verify simxir's lightly layouts against lightly's own code (three stages, two environments).

lightly's models need torchvision's model code; the PyPI torchvision wheel does not import beside the
CPU build of torch (its ``_C`` extension needs CUDA), so its Python files are used without it:

    python3 -m venv /tmp/venv-lightly && /tmp/venv-lightly/bin/pip install torch==2.13.0 numpy pillow
    /tmp/venv-lightly/bin/pip install --no-deps lightly==1.6.0
    /tmp/venv-lightly/bin/pip download --no-deps torchvision==0.28.0 -d /tmp/tv
    # unzip the wheel's torchvision/*.py (not the .so) into the venv's site-packages, then empty
    # torchvision/_meta_registrations.py (it registers kernels of the missing extension)

    /tmp/venv-lightly/bin/python benchmarks/checkpoints/verify_lightly.py source OUT  # lightly's models
    .venv/bin/python benchmarks/checkpoints/verify_lightly.py check OUT              # simxir: load, export
    /tmp/venv-lightly/bin/python benchmarks/checkpoints/verify_lightly.py roundtrip OUT  # strict reload
    .venv/bin/python benchmarks/checkpoints/verify_lightly.py table OUT              # results table

``source`` builds each layout with lightly's code (ResNetGenerator for the benchmarks, with and
without SplitBatchNorm; torchvision's resnet18 children for the examples and the tutorial), fills
the weights deterministically (fill.py), saves the checkpoint as lightly's users do and the
source model's features; it also writes the test fixtures (keys, shapes, top level, features) to
tests/models/fixtures/lightly/. ``check`` loads each file with simxir, compares features, exports it
back (lightly layout); ``roundtrip`` loads the export into lightly's model with strict=True.
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

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "lightly"
LAYOUTS = {   # name: (how lightly's users build it, input size)
    "benchmark-generator": ("nn.Sequential(*ResNetGenerator('resnet-18').children()[:-1], AdaptiveAvgPool2d(1)) "
                            "in a Lightning checkpoint with BYOL heads (lightly benchmarks/cifar10)", 32),
    "benchmark-generator-splitbn": ("the same with num_splits=8 (SplitBatchNorm: the MoCo benchmark)", 32),
    "examples-torchvision": ("nn.Sequential(*torchvision.models.resnet18().children()[:-1]) in a Lightning "
                             "checkpoint with BYOL heads (lightly examples/pytorch_lightning/byol.py)", 64),
    "tutorial": ("torch.save({'resnet18_parameters': backbone.state_dict()}) of the examples' backbone "
                 "(lightly's tutorial)", 64),
}


def _source_model(name: str) -> nn.Module:
    import torchvision
    from lightly.models import ResNetGenerator

    if name.startswith("benchmark"):
        splits = 8 if name.endswith("splitbn") else 0
        resnet = ResNetGenerator("resnet-18", num_splits=splits)
        return nn.Sequential(*list(resnet.children())[:-1], nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return nn.Sequential(*list(torchvision.models.resnet18().children())[:-1], nn.Flatten())


def _source_file(name: str, backbone: nn.Module) -> dict:
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

    if name == "tutorial":
        return {"resnet18_parameters": {k: v for k, v in backbone.state_dict().items()
                                        if not k.startswith(("8.", "9."))}}
    heads = {"projection_head": BYOLProjectionHead(512, 1024, 256),
             "prediction_head": BYOLPredictionHead(256, 1024, 256)}
    sd = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    for h, m in heads.items():
        sd.update({f"{h}.{k}": v for k, v in m.state_dict().items()})
    return {"state_dict": sd, "epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.5.0"}


def _input(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


def source(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, (how, size) in LAYOUTS.items():
        torch.manual_seed(0)
        model = _source_model(name)
        shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
        model.load_state_dict(fill(shapes))
        obj = _source_file(name, model)   # saved in training mode, as Lightning does (SplitBatchNorm:
        model.eval()                      # per-split statistics; eval() averages them)
        with torch.no_grad():
            feats = model(_input(size))
        torch.save(obj, out / f"{name}.ckpt")
        container = next((k for k in ("state_dict", "resnet18_parameters") if k in obj), None)
        sd = obj[container]
        fixture = {"layout": name, "built_as": how, "top_level": sorted(obj), "container": container,
                   "backbone_keys": [(k, s) for k, s in shapes],
                   "file_keys": {k: list(v.shape) for k, v in sd.items()},
                   "input_size": size, "input_seed": 1, "fill_seed": 0,
                   "features": [[round(float(v), 7) for v in row] for row in feats]}
        (FIXTURES / f"{name}.json").write_text(json.dumps(fixture))
        torch.save(feats, out / f"{name}.features.pt")
        print(f"{name}: {len(sd)} keys, features {tuple(feats.shape)}")


def check(out: Path) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from simxir.models import export_encoder

    rows = []
    for name, (_, size) in LAYOUTS.items():
        # back into the user's own file (heads kept, SplitBatchNorm statistics re-split) and, for the
        # benchmark layout, a backbone-only file (without a template a ReLU-stem ResNet is written with
        # torchvision's names, the layout of lightly's ImageNet benchmarks, not the examples' Sequential)
        row, model = check_file(out, name, ".ckpt", _input(size), "lightly")
        if name == "benchmark-generator":
            export_encoder(model, out / f"{name}.export-bare.ckpt", "lightly")
        rows.append(row)
    write_check(out, rows)


def roundtrip(out: Path) -> None:
    def strict_load(name: str) -> dict:
        ref = torch.load(out / f"{name}.features.pt")
        diffs = []
        for suffix in ("export", "export-bare"):
            path = out / f"{name}.{suffix}.ckpt"
            if not path.exists():
                continue
            obj = torch.load(path, weights_only=True)
            sd = obj["state_dict"] if "state_dict" in obj else obj["resnet18_parameters"]
            inner = {k.removeprefix("backbone."): v for k, v in sd.items()
                     if k.startswith("backbone.") or "state_dict" not in obj}
            model = _source_model(name)
            model.load_state_dict(inner, strict=True)
            model.eval()
            with torch.no_grad():
                diffs.append(float((model(_input(LAYOUTS[name][1])) - ref).abs().max()))
        return {"export_feature_difference": max(diffs), "exports_checked": len(diffs)}

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    write_table(json.loads((out / "roundtrip.json").read_text()), "lightly", "lightly",
                "lightly checkpoints made by lightly's own code (lightly 1.6.0)")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
