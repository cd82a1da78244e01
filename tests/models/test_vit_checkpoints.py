"""DINO and DINOv2 checkpoints as their own code writes them, from fixtures made by
benchmarks/checkpoints/verify_vit.py (the source model's keys, shapes and features on fixed inputs,
with fill.py's weights): simxir's ViT computes the source's features, at the native size and at a
second one (position embeddings interpolated by the source's rule), and exports back strictly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.models import export_encoder, load_encoder

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures" / "vit"
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)
ATOL = 1e-4      # float32 kernels differ between CPUs; a wrong key, token order or interpolation moves > 1e-3


def _write(name: str, fx: dict, path: Path) -> dict:
    keys = [(k, s) for k, s in fx["keys"]]
    sd = _fill.fill(keys, fx["fill_seed"])
    if name == "dino-full":      # main_dino.py's save_dict; the DDP student holds other weights
        student = _fill.fill(keys, fx["fill_seed"] + 100)
        obj = {"student": {f"module.{k}": v for k, v in student.items()}, "teacher": sd, "optimizer": {},
               "epoch": 100, "args": None, "dino_loss": {"center": torch.zeros(1, 1024)}}
    else:
        obj = sd
    torch.save(obj, path)
    return sd


def _features(model, fx):
    with torch.no_grad():
        for size, want in fx["features"].items():
            s = int(size)
            x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(s))
            n = 1 if s > 300 else 2          # DINOv2's native 518 px (1,370 tokens): one image is enough
            torch.testing.assert_close(model.eval()(x[:n]), torch.tensor(want)[:n], rtol=0, atol=ATOL)


@pytest.mark.parametrize("name,fmt,arch", [("dino-full", "dino", "vit-small"), ("dino-backbone", "dino", "vit-small"),
                                           ("dinov2", "dinov2", "vit-small-p14-518"),
                                           ("dinov2-reg", "dinov2", "vit-small-p14-518")])
def test_source_features_and_strict_export(tmp_path, name, fmt, arch):
    fx = json.loads((FIX / f"{name}.json").read_text())
    path = tmp_path / f"{name}.pth"
    sd = _write(name, fx, path)
    forced = "dino" if name == "dino-backbone" else None     # a bare timm-named dict: --format dino
    model, report = load_encoder(path, format=forced)
    assert (report.format, report.arch) == (fmt, arch)
    _features(model, fx)
    export_encoder(model, tmp_path / "back.pth", fmt, template=path)
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    inner = back["teacher"] if name == "dino-full" else back
    assert {k: list(v.shape) for k, v in inner.items()} == {k: list(v.shape) for k, v in sd.items()}
    if name == "dino-full":        # the student is the template's, untouched
        assert torch.equal(back["student"]["module.backbone.cls_token"],
                           torch.load(path, weights_only=True)["student"]["module.backbone.cls_token"])
    export_encoder(model, tmp_path / "bare.pth", fmt)       # backbone only, in the layout's names
    bare = torch.load(tmp_path / "bare.pth", weights_only=True)
    want = {k.removeprefix("backbone.") for k in sd if not k.startswith("head.")}
    got = set(bare["teacher"]) if fmt == "dino" else set(bare)
    assert got == ({f"backbone.{k}" for k in want} if fmt == "dino" else want)
    again, _ = load_encoder(tmp_path / "bare.pth")
    _features(again, fx)


def test_detection_and_the_dropped_parts(tmp_path):
    fx = json.loads((FIX / "dino-backbone.json").read_text())
    _write("dino-backbone", fx, tmp_path / "b.pth")
    _, report = load_encoder(tmp_path / "b.pth")
    assert report.format == "timm"        # timm's interpolation; identical at the native 224
    fx = json.loads((FIX / "dinov2.json").read_text())
    _write("dinov2", fx, tmp_path / "v2.pth")
    _, report = load_encoder(tmp_path / "v2.pth")
    assert report.dropped == ["mask_token"]
    fx = json.loads((FIX / "dino-full.json").read_text())
    _write("dino-full", fx, tmp_path / "full.pth")
    _, report = load_encoder(tmp_path / "full.pth")
    assert report.dropped and all(k.startswith("head.") for k in report.dropped)   # DINOHead
