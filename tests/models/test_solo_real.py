"""solo-learn checkpoints as solo-learn's models and Lightning's save_checkpoint write them
(fixtures from benchmarks/checkpoints/verify_solo.py: the LightningModule's keys and shapes, the
file's top level, and ``model.backbone``'s features with fill.py's weights): BYOL on CIFAR (the
padding-2 stem) and SimSiam with the ImageNet stem load exactly and export back key for key."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.models import export_encoder, load_encoder

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted((Path(__file__).parent / "fixtures" / "solo").glob("*.json"))
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)


@pytest.mark.parametrize("fixture", FIXTURES, ids=lambda p: p.stem)
def test_solo_checkpoint_loads_exactly_and_exports_back(fixture, tmp_path):
    fx = json.loads(fixture.read_text())
    obj = {k: {} for k in fx["top_level"]}
    obj.update({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6",
                "state_dict": _fill.fill([(k, s) for k, s in fx["keys"]], fx["fill_seed"])})
    torch.save(obj, tmp_path / "last.ckpt")
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    want = torch.tensor(fx["features"])

    model, report = load_encoder(tmp_path / "last.ckpt")
    assert report.format == "solo-learn"
    cifar = fx["layout"].endswith("cifar")
    assert ("padding 2" in report.network) == cifar and ("max-pool 3x3/2" in report.network) == (not cifar)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), want, rtol=0, atol=1e-5)

    export_encoder(model, tmp_path / "back.ckpt", "solo-learn", template=tmp_path / "last.ckpt")
    back = torch.load(tmp_path / "back.ckpt", weights_only=True)["state_dict"]
    assert {k: list(v.shape) for k, v in back.items()} == {k: s for k, s in fx["keys"]}
    again, _ = load_encoder(tmp_path / "back.ckpt")
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), want, rtol=0, atol=1e-5)
