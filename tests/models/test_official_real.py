"""MoCo v2 and SimSiam checkpoints as the official scripts write them (and mmpretrain's MoCo v2, below) (fixtures from
benchmarks/checkpoints/verify_official.py: the official builders' state_dict keys and shapes under
DDP's ``module.`` prefix, and the online encoder's features on a fixed input with fill.py's weights):
simxir's backbone computes the official encoder's features, and the export into the original file
keeps every key and shape."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.models import export_encoder, load_encoder

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "official").glob("*.json"))
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_official_checkpoint_loads_exactly_and_exports_back(fixture, tmp_path):
    fx = json.loads(fixture.read_text())
    sd = _fill.fill([(k, s) for k, s in fx["keys"]], fx["fill_seed"])
    torch.save({"epoch": 1, "arch": "resnet50", "state_dict": sd, "optimizer": {}}, tmp_path / "ckpt.pth.tar")
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    want = torch.tensor(fx["features"])

    model, report = load_encoder(tmp_path / "ckpt.pth.tar")
    assert report.format == fx["layout"].removesuffix("-v2") and report.arch == "resnet50"
    assert "ReLU after bn1" in report.network and "max-pool" in report.network
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), want, rtol=0, atol=1e-5)

    export_encoder(model, tmp_path / "back.pth.tar", report.format, template=tmp_path / "ckpt.pth.tar")
    back = torch.load(tmp_path / "back.pth.tar", weights_only=True)["state_dict"]
    assert {k: list(v.shape) for k, v in back.items()} == {k: s for k, s in fx["keys"]}
    again, _ = load_encoder(tmp_path / "back.pth.tar")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), want, rtol=0, atol=1e-5)


def test_mmpretrain_mocov2_loads_exactly_and_exports_back(tmp_path):
    """mmpretrain 1.x's MoCo (backbone, neck, encoder_k momentum copy, queue) in the dict mmengine's
    Runner saves, its config text naming default_scope 'mmpretrain'."""
    fx = json.loads((Path(__file__).parent / "fixtures" / "mmpretrain" / "mocov2.json").read_text())
    sd = _fill.fill([(k, s) for k, s in fx["keys"]], fx["fill_seed"])
    torch.save({"meta": fx["meta"], "state_dict": sd, "message_hub": {}, "optimizer": {}}, tmp_path / "epoch_1.pth")
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    want = torch.tensor(fx["features"])
    model, report = load_encoder(tmp_path / "epoch_1.pth")
    assert report.format == "mmpretrain" and report.arch == "resnet50"
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), want, rtol=0, atol=1e-5)
    export_encoder(model, tmp_path / "back.pth", "mmpretrain", template=tmp_path / "epoch_1.pth")
    back = torch.load(tmp_path / "back.pth", weights_only=True)["state_dict"]
    assert {k: list(v.shape) for k, v in back.items()} == {k: s for k, s in fx["keys"]}
    again, _ = load_encoder(tmp_path / "back.pth")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), want, rtol=0, atol=1e-5)


def test_mmselfsup_backbone_file_from_its_own_converter(tmp_path):
    """MMSelfSup 0.x's extract_backbone_weights.py output (keys from running it on the mmpretrain
    checkpoint above): bare torchvision names and author MMSelfSup; the same weights, the same features."""
    conv = json.loads((Path(__file__).parent / "fixtures" / "mmpretrain" / "mmselfsup-backbone.json").read_text())
    fx = json.loads((Path(__file__).parent / "fixtures" / "mmpretrain" / "mocov2.json").read_text())
    full = _fill.fill([(k, s) for k, s in fx["keys"]], fx["fill_seed"])
    sd = {k: full["backbone." + k] for k, _ in conv["keys"]}
    assert {k: list(v.shape) for k, v in sd.items()} == {k: s for k, s in conv["keys"]}
    torch.save({"state_dict": sd, "author": conv["author"]}, tmp_path / "backbone.pth")
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    model, report = load_encoder(tmp_path / "backbone.pth")
    assert report.format == "mmselfsup" and not report.dropped
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), torch.tensor(fx["features"]), rtol=0, atol=1e-5)
    export_encoder(model, tmp_path / "back.pth", "mmselfsup")
    back = torch.load(tmp_path / "back.pth", weights_only=True)
    assert back["author"] == "MMSelfSup" and set(back["state_dict"]) == set(sd)
