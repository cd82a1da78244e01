"""DINO, DINOv2, MoCo v3, iBOT and MAE checkpoints as their own code writes them, from fixtures made by
benchmarks/checkpoints/verify_vit.py and verify_mocov3_ibot_mae.py (the source model's keys, shapes and
features on fixed inputs, with fill.py's weights): simxir's ViT computes the source's features, at the
native size and at a second one (position embeddings interpolated by the source's rule), and exports
back strictly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.errors import UserError
from simxir.models import export_encoder, load_encoder, save_encoder

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


@pytest.mark.slow
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


# MoCo v3, iBOT and MAE (benchmarks/checkpoints/verify_mocov3_ibot_mae.py): name -> (format, --format, arch)
TIMM_SOURCES = {"mocov3-full": ("moco", None, "vit-small"), "mocov3-deit": ("moco", "moco", "vit-small"),
                "ibot-full": ("ibot", None, "vit-small"), "ibot-teacher": ("ibot", "ibot", "vit-small"),
                "mae-full": ("mae", None, "vit-small"), "mae-encoder": ("mae", "mae", "vit-small")}


def _write_parts(fx: dict, path: Path) -> dict:
    """The checkpoint file from a fixture: each part filled from its keys and seed, the other fields."""
    obj = dict(fx["top"])
    for part, seed in fx["parts"].items():
        obj[part] = _fill.fill([(k, s) for k, s in fx["keys"][part]], seed)
    if "ibot_loss" in obj:
        obj["ibot_loss"] = {"center": torch.zeros(1, 256)}
    torch.save(obj, path)
    return obj


def _backbone_keys(name: str, obj: dict, fx: dict) -> set[str]:
    """The evaluated backbone's keys in the file, as its project names them."""
    if name == "mocov3-full":
        return {k for k in obj["state_dict"] if k.startswith("module.base_encoder.") and ".head." not in k}
    if name == "ibot-full":
        return {k for k in obj["teacher"] if k.startswith("backbone.")}
    if name == "mae-full":
        return {k for k in obj["model"] if not k.startswith(("decoder_", "mask_token"))}
    (part,) = fx["parts"]           # a file of one state dict: all of it is the backbone
    return set(obj[part])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TIMM_SOURCES))
def test_mocov3_ibot_mae_features_and_strict_export(tmp_path, name):
    fmt, forced, arch = TIMM_SOURCES[name]
    fx = json.loads((FIX / f"{name}.json").read_text())
    path = tmp_path / f"{name}.pth"
    obj = _write_parts(fx, path)
    model, report = load_encoder(path, format=forced)
    assert (report.format, report.arch, model.heads) == (fmt, arch, 12 if fmt == "moco" else 6)
    _features(model, fx)
    want = _backbone_keys(name, obj, fx)
    export_encoder(model, tmp_path / "back.pth", fmt, template=path)      # into the original file
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back.keys() == obj.keys()
    for part in fx["parts"]:                           # same keys and shapes; heads, decoder, student kept
        assert {k: v.shape for k, v in back[part].items()} == {k: v.shape for k, v in obj[part].items()}
        kept = [k for k in obj[part] if k not in want]
        assert all(torch.equal(back[part][k], obj[part][k]) for k in kept)
    export_encoder(model, tmp_path / "bare.pth", fmt)          # the backbone alone, in the layout's names
    bare = torch.load(tmp_path / "bare.pth", weights_only=True)
    inner = {"moco": "state_dict", "ibot": "teacher", "mae": "model"}[fmt]
    strip = {"moco": "module.base_encoder.", "ibot": "backbone.", "mae": ""}[fmt]
    assert {k.removeprefix(strip) for k in bare[inner]} == \
        {k.removeprefix("module.base_encoder.").removeprefix("backbone.") for k in want}
    again, rep = load_encoder(tmp_path / "bare.pth")
    assert rep.format == fmt
    _features(again, fx)
    save_encoder(model, tmp_path / "e.safetensors")          # our own file keeps the 12 heads
    mine, _ = load_encoder(tmp_path / "e.safetensors")
    _features(mine, fx)


def test_heads_are_refused_where_the_target_builds_others(tmp_path):
    fx = json.loads((FIX / "mocov3-deit.json").read_text())
    _write_parts(fx, tmp_path / "m.pth")
    model, _ = load_encoder(tmp_path / "m.pth", format="moco")
    with pytest.raises(UserError, match="has 6 attention heads, this encoder 12"):
        export_encoder(model, tmp_path / "t.pth", "dino")   # DINO's ViT-S has 6 heads
    timm_model, report = load_encoder(tmp_path / "m.pth")   # a bare timm-named file: timm, 6 heads
    assert (report.format, timm_model.heads) == ("timm", 6)
    with pytest.raises(UserError, match="has 12 attention heads, this encoder 6"):
        export_encoder(timm_model, tmp_path / "t.pth", "moco")
    _, report = load_encoder(_write_mae_full(tmp_path))
    assert "mask_token" in report.dropped and any(k.startswith("decoder_") for k in report.dropped)


def _write_mae_full(tmp_path: Path) -> Path:
    _write_parts(json.loads((FIX / "mae-full.json").read_text()), tmp_path / "mae.pth")
    return tmp_path / "mae.pth"
