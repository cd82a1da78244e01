"""The CLI contract at its edges: one JSON object with --json on failure, one clear line and exit 2
for bad input, Ctrl-C that says what was kept, trusted pickles, exports that keep the features."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from simxir.errors import UserError
from simxir.io import load_checkpoint, read_npz

CLI = [sys.executable, "-m", "simxir.cli"]
ENV = {**os.environ, "SIMXIR_QUIET": "1"}


def _cli(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=ENV)


@pytest.mark.slow
def test_batch_size_zero_is_one_line_and_exit_2(tmp_path):
    r = _cli(["pretrain", "--method", "simsiam", "--out", str(tmp_path / "r"), "batch_size=0",
              "tensorboard=false", "--json"], tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "batch_size" in r.stderr
    assert json.loads(r.stdout)["error"].startswith("batch_size: expected a positive integer")


@pytest.mark.slow
def test_resume_without_checkpoint_names_the_checkpoint(tmp_path):
    r = _cli(["pretrain", "--out", str(tmp_path / "nonexistent"), "--resume"], tmp_path)
    assert r.returncode == 2 and "--method" not in r.stderr
    assert str(tmp_path / "nonexistent" / "checkpoint.pt") in r.stderr and "no checkpoint" in r.stderr
    r = _cli(["finetune", "--encoder", "x.pt", "--data", "digits", "--out", str(tmp_path / "nope"),
              "--resume"], tmp_path)
    assert r.returncode == 2 and "checkpoint.pt" in r.stderr


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(CLI + ["pretrain", "--method", "simclr", "--out", str(out), "epochs=500",
                                   "tensorboard=false", "monitor.eval_size=64", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=ENV,
                            # as from a shell: a pytest-xdist worker ignores SIGINT, and a child that
                            # starts with SIGINT ignored never raises KeyboardInterrupt
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert (out / "checkpoint.pt").exists(), "no checkpoint within 300 s"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    line = stderr.strip().splitlines()[-1]
    assert line.startswith("interrupted:") and str(out / "checkpoint.pt") in line and "--resume" in line
    assert json.loads(stdout)["status"] == "interrupted"
    # and the run does continue from there
    r = _cli(["pretrain", "--out", str(out), "--resume", "epochs=3", "--json"], tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["epochs"]) == 3


def test_pickles_that_need_unpickling_are_refused_then_loaded_when_trusted(tmp_path):
    ns = tmp_path / "ns.pt"       # torch.save of a dict holding a non-allow-listed global
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.ones(2)}}, ns)
    raw = tmp_path / "raw.pkl"    # a plain pickle (protocol 4): the weights-only unpickler's opcode error
    raw.write_bytes(pickle.dumps({"args": argparse.Namespace(lr=0.2)}, protocol=4))
    legacy = tmp_path / "legacy.pt"   # torch's pre-1.6 (non-zip) format
    torch.save({"args": argparse.Namespace(lr=0.3)}, legacy, _use_new_zipfile_serialization=False)
    for path, lr in ((ns, 0.1), (legacy, 0.3)):
        with pytest.raises(UserError, match="pass --allow-pickle"):
            load_checkpoint(path)
        assert load_checkpoint(path, allow_pickle=True)["args"].lr == lr
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (raw, garbage):       # not torch.save's format: no --allow-pickle suggestion
        for allow in (False, True):
            with pytest.raises(UserError, match="not a readable torch checkpoint"):
                load_checkpoint(path, allow_pickle=allow)


def test_a_directory_where_a_file_is_expected_says_so(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(UserError, match="is a directory"):
        read_npz(tmp_path, ("x",), option="--features")
    from simxir.analysis.predictor import load_predictor
    from simxir.config import ConfigError, read_recipe

    with pytest.raises(UserError, match="--predictor .*is a directory"):
        load_predictor(tmp_path, "--predictor")
    with pytest.raises(ConfigError, match="is a directory"):
        read_recipe(tmp_path)


@pytest.mark.slow
def test_analyze_reads_the_features_file_that_eval_writes(tmp_path):
    from simxir.analysis.runs import load_features
    from simxir.eval.features import save_features_npz

    tr, te = torch.randn(20, 6), torch.randn(8, 6)
    save_features_npz(tmp_path / "feats.npz", tr, torch.zeros(20, dtype=torch.long), te,
                      torch.zeros(8, dtype=torch.long))
    np.testing.assert_array_equal(load_features(tmp_path / "feats.npz"), tr.numpy())
    r = _cli(["analyze", "--features", str(tmp_path / "feats.npz"), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "decorrelation" in json.dumps(json.loads(r.stdout))
    np.savez(tmp_path / "other.npz", x=np.zeros((3, 2)))
    with pytest.raises(UserError, match="missing key.*features.*found x"):
        load_features(tmp_path / "other.npz")


def test_missing_tensorboard_is_said_once(tmp_path, capsys, monkeypatch):
    import builtins

    from simxir.train.logging import TensorBoard

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delenv("SIMXIR_QUIET", raising=False)
    tb = TensorBoard(tmp_path / "tb", enabled=True)
    assert tb.writer is None
    err = capsys.readouterr().err
    assert "tensorboard: not written" in err and "tensorboard=false" in err
    TensorBoard(tmp_path / "tb", enabled=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_the_epoch_mean_loss(tmp_path, monkeypatch):
    from simxir.augment import build_augment
    from simxir.data import load_dataset
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train import engine
    from simxir.train.pretrain import build_config

    shown: list[float] = []

    class Bar:
        def __init__(self, it, **_):
            self.it = it

        def __iter__(self):
            return iter(self.it)

        def set_postfix(self, **kw):
            shown.append(float(kw["loss"]))

    monkeypatch.setattr(engine, "progress", Bar)
    cfg = build_config("byol", None, ["epochs=1", "batch_size=64", "log_every=5", "tensorboard=false",
                                      "monitor.eval_size=64"])
    ds = load_dataset("digits")
    torch.manual_seed(0)
    method = build_method("byol", build_backbone(cfg.backbone), dict(cfg.method))
    res = engine.train(cfg, method, ds, build_augment(cfg.augment, ds.image_size, ds.mean, ds.std), tmp_path / "r")
    steps = res["steps"]
    assert len(steps) >= 2 and steps[0]["loss"] != steps[-1]["loss"]
    assert shown[-1] == pytest.approx(res["epochs"][0]["loss"], abs=1e-4)   # the epoch mean, not one step


def test_export_to_solo_learn_keeps_the_features_or_refuses(tmp_path):
    from simxir.models import build_backbone, export_encoder, load_encoder
    from simxir.models.checkpoint import max_feature_difference, verify_export

    ours = build_backbone("resnet18-cifar")            # simxir's CIFAR stem: conv1 padding 1
    with pytest.raises(UserError, match="padding 1.*padding 2"):
        export_encoder(ours, tmp_path / "solo.ckpt", "solo-learn")
    assert not (tmp_path / "solo.ckpt").exists()
    export_encoder(ours, tmp_path / "tv.pth", "torchvision")
    _, diff = verify_export(ours, tmp_path / "tv.pth", "torchvision")
    assert diff == 0.0
    solo = build_backbone("resnet18-cifar")
    solo.conv1.padding = (2, 2)                        # an encoder that came from solo-learn
    export_encoder(solo, tmp_path / "solo.ckpt", "solo-learn")
    back, _ = load_encoder(tmp_path / "solo.ckpt")
    assert back.conv1.padding == (2, 2) and max_feature_difference(solo, back) == 0.0
    # the check compares features, not only tensors: same weights under another padding differ
    shifted, _ = load_encoder(tmp_path / "solo.ckpt")
    shifted.conv1.padding = (1, 1)
    assert max_feature_difference(solo, shifted) > 1e-3
    with pytest.raises(UserError, match="padding 2.*padding 1"):
        export_encoder(solo, tmp_path / "tv2.pth", "torchvision")


@pytest.mark.slow
def test_export_command_verifies_features(tmp_path):
    from simxir.models import build_backbone, save_encoder

    solo = build_backbone("resnet18-cifar")
    solo.conv1.padding = (2, 2)
    save_encoder(solo, tmp_path / "enc.safetensors")
    r = _cli(["export-encoder", str(tmp_path / "enc.safetensors"), str(tmp_path / "out.ckpt"),
              "--to", "solo-learn", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["verified"] and res["max_feature_difference"] == 0.0
    r = _cli(["export-encoder", str(tmp_path / "enc.safetensors"), str(tmp_path / "out.pth"),
              "--to", "torchvision", "--json"], tmp_path)
    assert r.returncode == 2 and "padding 2" in json.loads(r.stdout)["error"]


@pytest.mark.slow
def test_collapse_is_reported_alike_in_epoch_lines_and_final_json(tmp_path):
    # an erank threshold no encoder meets: every epoch's monitors say COLLAPSED
    r = _cli(["pretrain", "--method", "simsiam", "--out", str(tmp_path / "r"), "epochs=2",
              "monitor.collapse_erank=1e9", "tensorboard=false", "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["collapsed"] is True and res["collapsed_epochs"] == [1, 2]
    assert [m["collapsed"] for m in res["epochs"]] == [True, True]


def test_class_geometry_matches_a_direct_computation():
    from simxir.experiments.demo import class_geometry

    g = torch.Generator().manual_seed(0)
    f = torch.randn(60, 5, generator=g)
    y = torch.arange(60) % 3
    u = torch.nn.functional.normalize(f.double(), dim=1).numpy()
    lab = y.numpy()
    within = np.mean([((u[lab == c][:, None] - u[lab == c][None]) ** 2).sum(-1).mean() for c in range(3)])
    between = np.mean([((u[lab == a][:, None] - u[lab == b][None]) ** 2).sum(-1).mean()
                       for a in range(3) for b in range(a + 1, 3)])
    res = class_geometry(f, y)
    assert res["within_class_msd"] == pytest.approx(within) and res["between_class_msd"] == pytest.approx(between)
