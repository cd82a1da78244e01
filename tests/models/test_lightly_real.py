"""lightly checkpoints as lightly's own code writes them (fixtures from
benchmarks/checkpoints/verify_lightly.py: key names, shapes, top level and the source model's
features on a fixed input, with weights from fill.py): simxir loads each so that its
backbone computes what lightly's did, reports the network, and exports back into the same layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.errors import UserError
from simxir.models import export_encoder, load_encoder, save_encoder

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "lightly").glob("*.json"))
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)


def _write(fx: dict, path: Path) -> None:
    """The checkpoint file of the fixture's layout, with the weights lightly's model had."""
    weights = _fill.fill([(k, s) for k, s in fx["backbone_keys"]], fx["fill_seed"])
    prefix = "backbone." if fx["container"] == "state_dict" else ""
    sd = {}
    for key, shape in fx["file_keys"].items():
        inner = key.removeprefix(prefix)
        sd[key] = weights[inner] if key.startswith(prefix) and inner in weights else torch.zeros(shape)
    obj = {k: 0 for k in fx["top_level"]}
    obj[fx["container"]] = sd
    torch.save(obj, path)


def _features(model: torch.nn.Module, fx: dict) -> torch.Tensor:
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    model.eval()
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_loads_as_lightly_computed_and_exports_back(fixture, tmp_path):
    fx = json.loads(fixture.read_text())
    _write(fx, tmp_path / "src.ckpt")
    model, report = load_encoder(tmp_path / "src.ckpt")
    assert report.format == "lightly"
    want = torch.tensor(fx["features"])
    torch.testing.assert_close(_features(model, fx), want, rtol=0, atol=1e-5)
    generator = fx["layout"].startswith("benchmark")
    assert ("no ReLU after bn1" in report.network) == generator
    assert ("max-pool 3x3/2" in report.network) == (not generator)

    export_encoder(model, tmp_path / "back.ckpt", "lightly", template=tmp_path / "src.ckpt")
    back = torch.load(tmp_path / "back.ckpt", weights_only=True)[fx["container"]]
    assert {k: list(v.shape) for k, v in back.items()} == fx["file_keys"]   # the layout's own keys
    again, _ = load_encoder(tmp_path / "back.ckpt")
    torch.testing.assert_close(_features(again, fx), want, rtol=0, atol=1e-5)


def test_generator_stem_survives_simxir_files_and_refuses_other_layouts(tmp_path):
    fx = json.loads((FIXTURES[0].parent / "benchmark-generator.json").read_text())
    _write(fx, tmp_path / "src.ckpt")
    model, _ = load_encoder(tmp_path / "src.ckpt")
    save_encoder(model, tmp_path / "enc.safetensors")
    again, report = load_encoder(tmp_path / "enc.safetensors")
    assert not again.stem_relu and "no ReLU after bn1" in report.network
    torch.testing.assert_close(_features(again, fx), torch.tensor(fx["features"]), rtol=0, atol=1e-5)
    for fmt in ("torchvision", "solo-learn", "moco"):
        with pytest.raises(UserError, match="no ReLU after bn1"):
            export_encoder(model, tmp_path / f"{fmt}.pth", fmt)
    export_encoder(model, tmp_path / "bare.ckpt", "lightly")       # backbone only: the Sequential names
    keys = set(torch.load(tmp_path / "bare.ckpt", weights_only=True)["state_dict"])
    assert keys == {k for k in fx["file_keys"] if k.startswith("backbone.")}
