"""Hugging Face transformers folders (save_pretrained): fixtures written by transformers 4.57 and 5.25
themselves (benchmarks/checkpoints/verify_transformers.py: config, keys, shapes, fill seed, the model's
own features) are read into simxir's backbones with the same features, exported back to the same keys,
and go through the commands; what cannot be built is one line."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from simxir.errors import UserError
from simxir.models import build_backbone, export_encoder, load_encoder

ROOT = Path(__file__).resolve().parents[2]
FIX = Path(__file__).parent / "fixtures" / "transformers"
_spec = importlib.util.spec_from_file_location("fill", ROOT / "benchmarks" / "checkpoints" / "fill.py")
_fill = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fill)
sys.path.insert(0, str(ROOT / "benchmarks" / "checkpoints"))
from common import vit_input  # noqa: E402

ATOL = 1e-4
CASES = sorted(p.stem for p in FIX.glob("*.json"))


def _folder(name: str, path: Path, in_memory: bool = False) -> dict:
    """The folder that version's save_pretrained wrote (``in_memory``: its model.state_dict() names)."""
    fx = json.loads((FIX / f"{name}.json").read_text())
    sd = _fill.fill([(k, s) for k, s in fx["fill_keys"]], fx["fill_seed"])
    tensors = sd if in_memory else {k: sd[fx["saved_from"][k]] for k, _ in fx["keys"]}
    path.mkdir(parents=True)
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"),
              metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(fx["config"]))
    return fx


def _max_diff(model, features: dict) -> float:
    with torch.no_grad():
        return max(float((model(vit_input(int(s))) - torch.tensor(f)).abs().max()) for s, f in features.items())


def test_fixtures_cover_each_family_in_both_generations():
    assert sorted(f"{n}-v{v}" for n in ("dinov2", "dinov2-reg", "resnet", "vit") for v in (4, 5)) == CASES
    versions = {json.loads((FIX / f"{c}.json").read_text())["transformers"].split(".")[0] for c in CASES}
    assert versions == {"4", "5"}


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_folder_and_file_load_with_the_source_features_and_export_back(tmp_path, name):
    fx = _folder(name, tmp_path / "src")
    model, report = load_encoder(tmp_path / "src")
    assert report.format == "transformers" and _max_diff(model.eval(), fx["features"]) < ATOL
    again, _ = load_encoder(tmp_path / "src" / "model.safetensors")       # the file, config.json beside it
    assert _max_diff(again.eval(), fx["features"]) < ATOL
    export_encoder(model, tmp_path / "out", "transformers", template=tmp_path / "src")
    written = load_file(tmp_path / "out" / "model.safetensors")
    assert {k: list(v.shape) for k, v in written.items()} == {k: s for k, s in fx["keys"]}   # the source's keys
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert {k: cfg[k] for k in fx["config"] if k != "transformers_version"} == \
        {k: v for k, v in fx["config"].items() if k != "transformers_version"}
    back, _ = load_encoder(tmp_path / "out")
    assert _max_diff(back.eval(), fx["features"]) < ATOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit-v5", "dinov2-v5"])
def test_transformers_5_in_memory_names_load_too(tmp_path, name):
    fx = _folder(name, tmp_path / "src", in_memory=True)
    assert any(".q_proj." in k for k, _ in fx["fill_keys"])        # 5.x's own module names
    model, _ = load_encoder(tmp_path / "src")
    assert _max_diff(model.eval(), fx["features"]) < ATOL


def _tiny_vit_folder(path: Path) -> Path:
    torch.manual_seed(0)
    export_encoder(build_backbone("vit-tiny-cifar"), path, "transformers")   # a ViTModel folder, 4 px patches
    return path


def test_commands_take_the_folder(tmp_path, cli):
    folder = _tiny_vit_folder(tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["model_type"], cfg["layer_norm_eps"], cfg["num_attention_heads"]) == ("vit", 1e-6, 3)
    r = cli(["inspect-encoder", folder, "--json"])
    assert r.code == 0 and r.json["format"] == "transformers" and r.json["arch"] == "vit-tiny-cifar"
    r = cli(["eval", "--encoder", folder, "--data", "digits", "--no-linear", "--knn", "5", "--json"])
    assert r.code == 0 and 0 <= r.json["knn"]["cosine"]["5"] <= 100


@pytest.mark.slow
def test_finetune_exports_a_transformers_encoder_as_a_folder(tmp_path, cli):
    folder = _tiny_vit_folder(tmp_path / "hf")
    r = cli(["finetune", "--encoder", folder, "--data", "digits", "--out", tmp_path / "run", "epochs=1",
             "batch_size=256", "tensorboard=false", "--no-linear", "--knn", "5", "--label-free-images", "0", "--json"])
    assert r.code == 0, r.err_lines
    tuned, report = load_encoder(tmp_path / "run" / "encoder.transformers")
    assert report.format == "transformers"
    simxir_file, _ = load_encoder(tmp_path / "run" / "encoder.safetensors")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tuned.eval()(x), simxir_file.eval()(x))


def test_layer_norm_eps_and_heads_come_from_the_config(tmp_path):
    folder = _tiny_vit_folder(tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-12}))
    model, _ = load_encoder(folder)
    assert model.norm_eps == 1e-12 and model.norm.eps == 1e-12 and model.blocks[0].norm1.eps == 1e-12
    export_encoder(model, tmp_path / "enc.safetensors", "simxir")          # kept through simxir's own file
    assert load_encoder(tmp_path / "enc.safetensors")[0].norm.eps == 1e-12


def test_preprocessing_of_the_folder_is_reported(tmp_path):
    folder = _tiny_vit_folder(tmp_path / "hf")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "crop_size": {"height": 32}}))
    _, report = load_encoder(folder)
    assert report.preprocess["mean"] == (0.485, 0.456, 0.406) and report.preprocess["size"] == 32


@pytest.mark.parametrize("change,needle", [
    ({"model_type": "bert", "architectures": ["BertModel"]}, "a transformers 'bert' model"),
    ({"num_hidden_layers": 6}, "config.json says 6 layers, the weights hold 12"),
    ({"hidden_act": "relu"}, "hidden_act='relu'"),
])
def test_what_cannot_be_built_is_one_line_and_nothing_is_written(tmp_path, cli, change, needle):
    folder = _tiny_vit_folder(tmp_path / "hf")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, **change}))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = cli(["inspect-encoder", folder, "--json"])
    assert r.code == 2 and needle in r.error and r.json["exit_code"] == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    with pytest.raises(UserError, match="need their config.json"):
        (tmp_path / "alone").mkdir()
        (tmp_path / "alone" / "w.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
        load_encoder(tmp_path / "alone" / "w.safetensors")


@pytest.mark.slow
def test_eval_uses_the_folders_preprocessing_unless_told_otherwise(tmp_path, cli):
    folder = _tiny_vit_folder(tmp_path / "hf")
    args = ["eval", "--encoder", folder, "--data", "digits", "--no-linear", "--knn", "5", "--json"]
    plain = cli(args).json["knn"]["cosine"]["5"]
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.9, 0.9, 0.9], "image_std": [0.01, 0.01, 0.01]}))   # far from digits' own statistics
    r = cli(args)
    assert r.code == 0 and any("encoder's own preprocessing" in line for line in r.err_lines)
    assert r.json["knn"]["cosine"]["5"] != plain                             # another normalisation: other features
    again = cli([*args, "--normalization", "data"])
    assert again.json["knn"]["cosine"]["5"] == plain


@pytest.mark.slow
def test_the_layouts_known_preprocessing_and_the_preprocessors_size(tmp_path, cli):
    from simxir.models.load import IMAGENET_MEAN

    for arch, fmt, known in (("resnet18", "torchvision", True), ("resnet18-cifar", "torchvision", False),
                             ("resnet18", "simxir", False)):
        path = tmp_path / f"{arch}-{fmt}.{'safetensors' if fmt == 'simxir' else 'pth'}"
        export_encoder(build_backbone(arch), path, fmt)
        _, report = load_encoder(path)
        assert (report.preprocess is not None) == known, (arch, fmt)
        if known:
            assert report.preprocess["mean"] == IMAGENET_MEAN and "preprocessing: mean" in report.summary()
    folder = _tiny_vit_folder(tmp_path / "hf")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "crop_size": {"height": 32, "width": 32}}))
    r = cli(["eval", "--encoder", folder, "--data", "digits", "--no-linear", "--knn", "5", "--json"])
    assert r.code == 0 and any("32px" in line and "own preprocessing" in line for line in r.err_lines)
    r = cli(["eval", "--encoder", folder, "--data", "digits", "--no-linear", "--knn", "5", "--image-size", "16",
             "--json"])
    assert r.code == 0 and any("16px" in line for line in r.err_lines)          # --image-size wins
