"""Checkpoints as the other libraries' own code writes them, from fixtures made by
benchmarks/checkpoints/verify_*.py (their keys, shapes and top level, and the source model's features
on a fixed input with fill.py's weights): lightly's three layouts (its benchmarks' ResNetGenerator
Sequential, without the ReLU after bn1, also with SplitBatchNorm; its examples' torchvision
Sequential; its tutorial's ``resnet18_parameters``), the official MoCo v2 and SimSiam scripts (DDP's
``module.`` keys), solo-learn through Lightning's save_checkpoint (CIFAR stem with padding 2, ImageNet stem),
mmpretrain 1.x's MoCo v2 in mmengine's Runner dict, and MMSelfSup 0.x's backbone converter. simxir's
backbone computes the source's features, and the export into the original file keeps every key and
shape (so the source library's model strict-loads it: checked against the libraries by the scripts)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from simxir.errors import UserError
from simxir.models import export_encoder, load_encoder, save_encoder

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures"
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)


# The fixtures' features were computed by the source libraries' own models on another CPU; a
# ResNet-50's float32 kernels differ by up to 3e-5 between CPUs (AVX512 vs AVX2 here), while a wrong
# key, prefix or missing ReLU moves features by > 1e-1 (results/checkpoints/).
ATOL = 1e-4


def _weights(fx: dict) -> dict[str, torch.Tensor]:
    return _fill.fill([(k, s) for k, s in fx["keys"]], fx["fill_seed"])


def _exact_and_back(path: Path, fx: dict, fmt: str, keys: dict[str, list[int]], template: bool = True,
                    container: str = "state_dict"):
    """Load ``path`` (features == the fixture's), export it (into itself as template), reload; the
    export's ``container`` holds exactly ``keys``. Returns the load report."""
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    want = torch.tensor(fx["features"])
    model, report = load_encoder(path)
    assert report.format == fmt
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), want, rtol=0, atol=ATOL)
    back_path = path.with_name("back" + path.suffix)
    export_encoder(model, back_path, fmt, template=path if template else None)
    back = torch.load(back_path, weights_only=True)[container]
    assert {k: list(v.shape) for k, v in back.items()} == keys
    again, _ = load_encoder(back_path)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), want, rtol=0, atol=ATOL)
    return report


def _write_lightly(fx: dict, path: Path) -> None:
    """The file of the fixture's lightly layout, with the weights lightly's model had."""
    weights = _fill.fill([(k, s) for k, s in fx["backbone_keys"]], fx["fill_seed"])
    prefix = "backbone." if fx["container"] == "state_dict" else ""
    sd = {}
    for key, shape in fx["file_keys"].items():
        inner = key.removeprefix(prefix)
        sd[key] = weights[inner] if key.startswith(prefix) and inner in weights else torch.zeros(shape)
    obj = {k: 0 for k in fx["top_level"]}
    obj[fx["container"]] = sd
    torch.save(obj, path)


@pytest.mark.parametrize("name", ["benchmark-generator", "benchmark-generator-splitbn", "examples-torchvision",
                                  "tutorial"])
def test_lightly_layouts(name, tmp_path):
    fx = json.loads((FIX / "lightly" / f"{name}.json").read_text())
    _write_lightly(fx, tmp_path / "src.ckpt")
    report = _exact_and_back(tmp_path / "src.ckpt", fx, "lightly", fx["file_keys"], container=fx["container"])
    generator = name.startswith("benchmark")
    assert ("no ReLU after bn1" in report.network) == generator
    assert ("max-pool 3x3/2" in report.network) == (not generator)


def test_lightly_generator_stem_survives_simxir_files_and_refuses_other_layouts(tmp_path):
    fx = json.loads((FIX / "lightly" / "benchmark-generator.json").read_text())
    _write_lightly(fx, tmp_path / "src.ckpt")
    model, _ = load_encoder(tmp_path / "src.ckpt")
    save_encoder(model, tmp_path / "enc.safetensors")
    x = torch.randn(2, 3, fx["input_size"], fx["input_size"], generator=torch.Generator().manual_seed(fx["input_seed"]))
    again, report = load_encoder(tmp_path / "enc.safetensors")
    assert not again.stem_relu and "no ReLU after bn1" in report.network
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), torch.tensor(fx["features"]), rtol=0, atol=ATOL)
    for fmt in ("torchvision", "solo-learn", "moco"):
        with pytest.raises(UserError, match="no ReLU after bn1"):
            export_encoder(model, tmp_path / f"{fmt}.pth", fmt)
    export_encoder(model, tmp_path / "bare.ckpt", "lightly")       # backbone only: the Sequential names
    keys = set(torch.load(tmp_path / "bare.ckpt", weights_only=True)["state_dict"])
    assert keys == {k for k in fx["file_keys"] if k.startswith("backbone.")}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["moco-v2", "simsiam"])
def test_official_moco_v2_and_simsiam(name, tmp_path):
    fx = json.loads((FIX / "official" / f"{name}.json").read_text())
    torch.save({"epoch": 1, "arch": "resnet50", "state_dict": _weights(fx), "optimizer": {}}, tmp_path / "c.pth.tar")
    report = _exact_and_back(tmp_path / "c.pth.tar", fx, name.removesuffix("-v2"), dict(fx["keys"]))
    assert report.arch == "resnet50" and "ReLU after bn1" in report.network and "max-pool" in report.network


@pytest.mark.parametrize("name", ["byol-cifar", "simsiam-imagenet"])
def test_solo_learn_through_lightning(name, tmp_path):
    fx = json.loads((FIX / "solo" / f"{name}.json").read_text())
    obj = {k: {} for k in fx["top_level"]}
    obj.update({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": _weights(fx)})
    torch.save(obj, tmp_path / "last.ckpt")
    report = _exact_and_back(tmp_path / "last.ckpt", fx, "solo-learn", dict(fx["keys"]))
    cifar = name.endswith("cifar")
    assert ("padding 2" in report.network) == cifar and ("max-pool 3x3/2" in report.network) == (not cifar)


@pytest.mark.slow
def test_mmpretrain_mocov2_in_mmengines_runner_dict(tmp_path):
    fx = json.loads((FIX / "mmpretrain" / "mocov2.json").read_text())
    torch.save({"meta": fx["meta"], "state_dict": _weights(fx), "message_hub": {}, "optimizer": {}},
               tmp_path / "epoch_1.pth")
    report = _exact_and_back(tmp_path / "epoch_1.pth", fx, "mmpretrain", dict(fx["keys"]))
    assert report.arch == "resnet50"


def test_mmselfsup_backbone_file_from_its_own_converter(tmp_path):
    """extract_backbone_weights.py's output on the mmpretrain checkpoint: bare names, author MMSelfSup."""
    conv = json.loads((FIX / "mmpretrain" / "mmselfsup-backbone.json").read_text())
    fx = json.loads((FIX / "mmpretrain" / "mocov2.json").read_text())
    full = _weights(fx)
    sd = {k: full["backbone." + k] for k, _ in conv["keys"]}
    torch.save({"state_dict": sd, "author": conv["author"]}, tmp_path / "backbone.pth")
    report = _exact_and_back(tmp_path / "backbone.pth", fx, "mmselfsup", dict(conv["keys"]), template=False)
    assert not report.dropped
    assert torch.load(tmp_path / "back.pth", weights_only=True)["author"] == "MMSelfSup"
