"""``simxir inspect-encoder`` / ``export-encoder``: one JSON object on stdout, one-line errors."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from simxir.cli import main
from simxir.errors import UserError
from simxir.models import build_backbone


def run(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["simxir", *args])
    monkeypatch.setenv("SIMXIR_QUIET", "1")
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def solo_ckpt(tmp_path):
    m = build_backbone("convnet-small")
    sd = {"backbone." + k: v for k, v in m.state_dict().items()}
    sd.update({"projector.0.weight": torch.randn(4, 128), "momentum_backbone.features.0.weight":
               torch.randn(32, 3, 3, 3)})
    path = tmp_path / "solo.ckpt"
    torch.save({"state_dict": sd, "epoch": 1}, path)
    return path, m


def test_inspect_json(monkeypatch, capsys, solo_ckpt):
    path, m = solo_ckpt
    code, out, err = run(monkeypatch, capsys, "inspect-encoder", str(path), "--json")
    assert code == 0, err
    info = json.loads(out)  # exactly one JSON object, nothing else on stdout
    assert info["format"] == "solo-learn" and info["arch"] == "convnet-small"
    assert info["feature_dim"] == 128
    assert info["num_params"] == sum(p.numel() for p in m.parameters())
    assert sorted(info["dropped"]) == ["momentum_backbone.features.0.weight", "projector.0.weight"]


def test_export_json_and_reload(monkeypatch, capsys, solo_ckpt, tmp_path):
    path, m = solo_ckpt
    out_path = tmp_path / "out.pth"
    code, out, err = run(monkeypatch, capsys, "export-encoder", str(path), str(out_path),
                         "--to", "vissl", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert res["format"] == "vissl" and res["source_format"] == "solo-learn" and res["verified"]
    trunk = torch.load(out_path, weights_only=True)["classy_state_dict"]["base_model"]["model"]["trunk"]
    assert set(trunk) == {"_feature_blocks." + k for k in m.state_dict()}


def test_errors_are_one_line(monkeypatch, capsys, solo_ckpt, tmp_path):
    path, _ = solo_ckpt
    code, out, err = run(monkeypatch, capsys, "export-encoder", str(path), str(tmp_path / "o.pth"),
                         "--to", "keras")
    assert code == 2 and out == "" and err.startswith("error: --to 'keras'") and err.count("\n") == 1
    code, out, err = run(monkeypatch, capsys, "inspect-encoder", str(tmp_path / "missing.pth"))
    assert code == 2 and out == "" and "no such checkpoint" in err and err.count("\n") == 1
    code, out, err = run(monkeypatch, capsys, "export-encoder", str(path), str(path), "--to", "moco")
    assert code == 2 and "overwrite" in err


def test_export_command_verifies_features(tmp_path, cli):
    from simxir.models import build_backbone, save_encoder

    solo = build_backbone("resnet18-cifar")
    solo.conv1.padding = (2, 2)
    save_encoder(solo, tmp_path / "enc.safetensors")
    r = cli(["export-encoder", tmp_path / "enc.safetensors", tmp_path / "out.ckpt", "--to", "solo-learn", "--json"])
    assert r.code == 0, r.err_lines
    res = r.json
    assert res["verified"] and res["max_feature_difference"] == 0.0
    r = cli(["export-encoder", tmp_path / "enc.safetensors", tmp_path / "out.pth", "--to", "torchvision", "--json"])
    assert r.code == 2 and "padding 2" in r.json["error"]


def test_a_safetensors_export_is_safetensors_and_a_failed_export_leaves_no_file(tmp_path, cli, monkeypatch):
    from safetensors.torch import load_file

    from simxir.models import build_backbone, load_encoder, save_encoder

    save_encoder(build_backbone("vit-tiny-cifar"), tmp_path / "enc.safetensors")
    r = cli(["export-encoder", tmp_path / "enc.safetensors", tmp_path / "timm.safetensors", "--to", "timm", "--json"])
    assert r.code == 0, r.err_lines
    assert "patch_embed.proj.weight" in load_file(tmp_path / "timm.safetensors")   # a real safetensors file
    assert load_encoder(tmp_path / "timm.safetensors")[1].format == "timm"
    r = cli(["export-encoder", tmp_path / "enc.safetensors", tmp_path / "dino.safetensors", "--to", "dino"])
    assert r.code == 2 and "name it .pth" in r.error and not (tmp_path / "dino.safetensors").exists()

    import simxir.models.command as command

    def fails(model, path, fmt, allow_pickle=False):
        raise UserError(f"{path}: re-loading the export computes different features")

    monkeypatch.setattr(command, "verify_export", fails)
    r = cli(["export-encoder", tmp_path / "enc.safetensors", tmp_path / "bad.pth", "--to", "timm"])
    assert r.code == 2 and str(tmp_path / "bad.pth") in r.error and ".partial" not in r.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.safetensors", "timm.safetensors"]
