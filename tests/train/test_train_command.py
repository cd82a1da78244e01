"""``simxir pretrain``: JSON output, run folder, same seed -> same run, errors, divergence exit code,
and every recipe in recipes/pretrain builds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simxir.config import ConfigError
from simxir.errors import UserError
from simxir.train.assemble import build_config

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "recipes" / "pretrain").rglob("*.yaml"))


@pytest.fixture
def tiny_npz(tmp_path) -> Path:
    """A real .npz in the documented format: 64 train / 16 test 8x8 RGB uint8 NHWC, 4 classes."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (64, 8, 8, 3), dtype=np.uint8),
             y_train=np.arange(64) % 4, x_test=rng.integers(0, 256, (16, 8, 8, 3), dtype=np.uint8),
             y_test=np.arange(16) % 4, classes=np.array(["a", "b", "c", "d"]))
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SIMXIR_QUIET="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "simxir.cli", "pretrain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


COMMON = ["backbone=convnet-small", "augment=tiny", "batch_size=32", "tensorboard=false",
          "method.proj_hidden=16", "method.proj_dim=8", "method.pred_hidden=16", "monitor.eval_size=16"]


@pytest.mark.slow
def test_pretrain_json_run_folder_and_reproducibility(tmp_path, tiny_npz):
    outs = []
    for name in ("a", "b"):
        r = _run(["--method", "simsiam", "--data", f"npz:{tiny_npz}", "--out", str(tmp_path / name),
                  "epochs=2", "seed=3", "monitor.knn_every=2", "monitor.knn_k=3", *COMMON, "--json"], tmp_path)
        assert r.returncode == 0, r.stderr
        outs.append(json.loads(r.stdout))       # exactly one JSON object on stdout
    res = outs[0]
    assert set(res) == {"epochs", "collapsed", "collapsed_epochs", "encoder"}
    assert [e["epoch"] for e in res["epochs"]] == [1, 2]
    for e in res["epochs"]:
        assert np.isfinite(e["loss"]) and "z_std" in e and "feat_erank" in e and "probe_test_top1" in e
    assert isinstance(res["collapsed"], bool)
    # the kNN monitor (monitor.knn_every=2): epoch 2 only, a fraction like the probe's
    assert "knn_top1" not in res["epochs"][0] and 0 <= res["epochs"][1]["knn_top1"] <= 1
    assert res["encoder"] == str(tmp_path / "a" / "encoder.safetensors") and Path(res["encoder"]).is_file()
    assert [e["loss"] for e in outs[1]["epochs"]] == [e["loss"] for e in res["epochs"]]   # same seed
    run = tmp_path / "a"
    assert {"config.yaml", "checkpoint.pt", "metrics.csv", "steps.csv", "encoder.pt"} <= {p.name for p in run.iterdir()}
    saved = build_config(None, run / "config.yaml", [])
    assert saved.method_name == "simsiam" and saved.seed == 3 and saved.method["proj_dim"] == 8
    enc = torch.load(run / "encoder.pt", weights_only=True)
    assert "features.0.weight" in enc   # convnet-small's own parameter names

    # --resume of a finished run with more epochs continues from its checkpoint and config.yaml
    r = _run(["--out", str(run), "--resume", "epochs=3", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert [e["epoch"] for e in json.loads(r.stdout)["epochs"]] == [1, 2, 3]


@pytest.mark.slow
def test_diverged_run_exits_3_with_one_line(tmp_path, tiny_npz):
    r = _run(["--method", "simsiam", "--data", f"npz:{tiny_npz}", "--out", str(tmp_path / "r"),
              "epochs=3", "optim.lr=1e30", "probe.enabled=false", *COMMON, "--json"], tmp_path)
    assert r.returncode == 3, r.stderr
    failed = json.loads(r.stdout)   # --json: one object, also when the run fails
    assert failed["status"] == "diverged" and failed["exit_code"] == 3 and "loss is nan" in failed["error"]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("diverged:")]
    assert len(lines) == 1 and "epoch" in lines[0] and "step" in lines[0]


def test_unknown_keys_name_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown key 'method.nope'.*method.proj_dim"):
        build_config("simsiam", None, ["method.nope=1"])
    with pytest.raises(ConfigError, match="unknown key 'nope'.*batch_size"):
        build_config("simsiam", None, ["nope=1"])
    with pytest.raises(UserError, match="--method"):
        build_config(None, None, [])
    with pytest.raises(UserError, match="--method nope"):
        build_config("nope", None, [])


def test_overrides_reach_the_config():
    cfg = build_config("barlow_twins", None, ["epochs=1", "batch_size=128", "seed=3",
                                              "backbone=resnet18-cifar", "method.lambd=0.005",
                                              "optim.name=lars", "channels_last=false"], data="digits")
    assert (cfg.epochs, cfg.batch_size, cfg.seed, cfg.backbone, cfg.data) == (1, 128, 3, "resnet18-cifar", "digits")
    assert cfg.method["lambd"] == 0.005 and cfg.optim.name == "lars" and cfg.channels_last is False


def _recipe_cases():
    """(recipe, method) pairs: a recipe without method_name is run with every pretraining method."""
    import yaml

    from simxir.methods import PRETRAIN_METHODS

    stepped = set()
    for recipe in RECIPES:
        raw = yaml.safe_load(recipe.read_text())
        name = str(recipe.relative_to(REPO / "recipes" / "pretrain"))
        for m in [raw["method_name"]] if raw.get("method_name") else sorted(PRETRAIN_METHODS):
            heads = {k: v for k, v in (raw.get("method") or {}).items() if k.endswith(("_sizes", "_dim", "_hidden"))}
            big = any(max(w if isinstance(w, list) else [w]) >= 4096 for w in heads.values())   # 8192^3 heads: GBs
            # 8192-wide heads step at half their widths (the full-size step of the bridge's W_p^T W_p,
            # d^3, took 40-60 s of the suite's 10 minutes; at 4096 it is 1/8 of that), a second recipe
            # with the same heads at 1/8 of them; each recipe's own constants still step
            shrink = (8 if (m, repr(heads)) in stepped else 2) if big else 1
            stepped.add((m, repr(heads)))
            yield pytest.param(recipe, m, shrink, id=f"{name}-{m}", marks=[pytest.mark.slow] if big else [])


def _shrunk(method_cfg: dict, by: int) -> dict:
    def div(v):
        return [max(1, w // by) for w in v] if isinstance(v, list) else max(1, v // by)
    return {k: div(v) if k.endswith(("_sizes", "_dim", "_hidden")) else v for k, v in method_cfg.items()}


@pytest.mark.parametrize("recipe,method,shrink", list(_recipe_cases()))
def test_every_recipe_builds_and_takes_a_step(recipe, method, shrink):
    """What the recipe names exists, its method builds with the recipe's heads (``shrink``: their
    widths divided by it), and one optimizer step with its optimizer and augmentation (on a small
    backbone and batch) changes the weights, finitely."""
    from simxir.augment import RECIPES as AUGMENTS
    from simxir.augment import build_augment
    from simxir.data.load import parse_spec
    from simxir.methods import build_method
    from simxir.models import ARCHS, build_backbone
    from simxir.models.vit import parse_vit
    from simxir.train.optim import build_optimizer

    cfg = build_config(method, recipe, [])
    assert (cfg.backbone in ARCHS or parse_vit(cfg.backbone)) and cfg.augment in AUGMENTS
    parse_spec(cfg.data)
    torch.manual_seed(0)
    m = build_method(method, build_backbone("convnet-small"), _shrunk(dict(cfg.method), shrink))
    opt = build_optimizer(cfg.optim, m, cfg.optim.lr)
    m.use_views(cfg.multicrop.global_crops, cfg.multicrop.local_crops)
    aug = build_augment(cfg.augment, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), multicrop=cfg.multicrop)
    views = aug.views(torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8))
    assert len(views) == cfg.multicrop.global_crops + cfg.multicrop.local_crops
    before = [p.detach().clone() for p in m.backbone.parameters()]
    loss = m(views)["loss"]
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    after = list(m.backbone.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_batch_size_zero_is_one_line_and_exit_2(tmp_path, monkeypatch, cli):
    monkeypatch.setenv("SIMXIR_QUIET", "1")
    r = cli(["pretrain", "--method", "simsiam", "--out", tmp_path / "r", "batch_size=0", "tensorboard=false", "--json"])
    assert r.code == 2 and r.err_lines == [r.error] and "batch_size" in r.error
    assert r.json["error"].startswith("batch_size: expected a positive integer")


def test_resume_without_checkpoint_names_the_checkpoint(tmp_path, cli):
    r = cli(["pretrain", "--out", tmp_path / "nonexistent", "--resume"])
    assert r.code == 2 and "--method" not in r.error
    assert str(tmp_path / "nonexistent" / "checkpoint.pt") in r.error and "no checkpoint" in r.error
    r = cli(["finetune", "--encoder", "x.pt", "--data", "digits", "--out", tmp_path / "nope", "--resume"])
    assert r.code == 2 and "checkpoint.pt" in r.error


@pytest.mark.slow
def test_collapse_is_reported_alike_in_epoch_lines_and_final_json(tmp_path, cli):
    # an erank threshold no encoder meets: every epoch's monitors say COLLAPSED
    r = cli(["pretrain", "--method", "simsiam", "--out", tmp_path / "r", "epochs=2",
             "monitor.collapse_erank=1e9", "tensorboard=false", "--json"])
    assert r.code == 0, r.err_lines
    res = r.json
    assert res["collapsed"] is True and res["collapsed_epochs"] == [1, 2]
    assert [m["collapsed"] for m in res["epochs"]] == [True, True]


def test_zero_init_residual_from_the_config_and_the_bridging_recipes(tmp_path):
    from simxir.models import load_encoder, save_encoder
    from simxir.train.assemble import build_model

    cfg = build_config(None, "bridging-s5/imagenet-bridge", ["method.proj_sizes=[16,16]"])
    assert cfg.zero_init_residual is True
    backbone = build_model(cfg).backbone
    last = [m.bn3.weight for layer in (backbone.layer1, backbone.layer4) for m in layer]
    assert all(float(w.abs().max()) == 0.0 for w in last)
    assert float(backbone.layer1[0].bn1.weight.abs().min()) > 0          # only the branches' last BN
    save_encoder(backbone, tmp_path / "z.safetensors")                   # a checkpoint made with it loads
    back, _ = load_encoder(tmp_path / "z.safetensors")
    assert float(back.layer1[0].bn3.weight.abs().max()) == 0.0
    plain = build_model(build_config("bridge", None, ["backbone=resnet18", "method.proj_sizes=[16,16]"])).backbone
    assert float(plain.layer1[0].bn2.weight.abs().min()) > 0
    with pytest.raises(UserError, match="zero_init_residual: applies to ResNet"):
        build_model(build_config("simsiam", None, ["zero_init_residual=true"]))
