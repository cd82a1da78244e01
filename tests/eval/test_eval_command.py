"""``simxir eval --features``: JSON on stdout end to end, tables, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from simxir.errors import UserError
from simxir.eval.command import eval_command
from simxir.eval.features import load_features_npz
from simxir.eval.knn import knn_classify, parse_ks


def _write(path: Path, classes=3, d=8, n_tr=90, n_te=30, seed=0, **override):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, d)) * 8
    ytr, yte = rng.integers(0, classes, n_tr), rng.integers(0, classes, n_te)
    arrays = dict(train_features=(centers[ytr] + rng.normal(size=(n_tr, d))).astype(np.float32),
                  train_labels=ytr, test_features=(centers[yte] + rng.normal(size=(n_te, d))).astype(np.float32),
                  test_labels=yte)
    arrays.update(override)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("eval")(eval_command)
    app.command("noop")(lambda: None)   # keeps "eval" a named sub-command
    return app


@pytest.mark.slow
def test_features_json_end_to_end_via_real_entry_point(tmp_path):
    arrays = _write(tmp_path / "f.npz")
    env = dict(os.environ, SIMXIR_QUIET="0")   # progress bars on: they must still stay off stdout
    proc = subprocess.run([sys.executable, "-m", "simxir.cli", "eval", "--features", str(tmp_path / "f.npz"),
                           "--knn", "5,7", "--linear-epochs", "20", "--device", "cpu", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)      # exactly one JSON object and nothing else
    assert set(out) == {"knn", "knn_weighted", "linear", "right", "n_test", "labels"}   # right: per-image outcomes
    assert set(out["knn"]["cosine"]) == {"5", "7"} and set(out["knn"]["euclidean"]) == {"5", "7"}
    assert out["n_test"] == len(arrays["test_labels"])
    import torch
    ref = knn_classify(*(torch.from_numpy(arrays[k]) for k in
                         ("train_features", "train_labels", "test_features", "test_labels")),
                       ks=(5, 7), show_progress=False)
    assert out["knn"] == ref["knn"] and out["knn_weighted"] == ref["knn_weighted"]
    assert out["linear"]["top1"] > 90 and out["linear"]["top5"] >= out["linear"]["top1"]


def test_features_tables_and_no_linear(tmp_path):
    _write(tmp_path / "f.npz")
    res = CliRunner().invoke(_app(), ["eval", "--features", str(tmp_path / "f.npz"), "--no-linear",
                                      "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "Table 1" in res.stdout and "k=21" in res.stdout and "Table 2" not in res.stdout
    res = CliRunner().invoke(_app(), ["eval", "--features", str(tmp_path / "f.npz"), "--knn", "none",
                                      "--linear-epochs", "3", "--device", "cpu", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) == {"linear", "right", "n_test", "labels"} and set(out["right"]) == {"linear", "linear_top5"}


@pytest.mark.parametrize("override,needle", [
    (dict(test_labels=None), "missing key(s) test_labels"),
    (dict(train_labels=np.zeros(5, np.int64)), "train_labels has 5 entries"),
    (dict(test_features=np.zeros((30, 4), np.float32)), "dim"),
    (dict(train_features=np.zeros(90, np.float32)), "2-D"),
    (dict(test_labels=np.zeros(30, np.float32)), "integer"),
    (dict(train_features=np.full((90, 8), np.nan, np.float32)), "NaN"),
])
def test_bad_npz_gives_one_line_user_error(tmp_path, override, needle):
    _write(tmp_path / "bad.npz", **override)
    with pytest.raises(UserError) as err:
        load_features_npz(tmp_path / "bad.npz")
    msg = str(err.value)
    assert needle in msg and "bad.npz" in msg and "\n" not in msg


def test_not_an_npz_and_missing_file(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    with pytest.raises(UserError, match="junk.npz"):
        load_features_npz(tmp_path / "junk.npz")
    with pytest.raises(UserError, match="no such file"):
        load_features_npz(tmp_path / "absent.npz")


@pytest.mark.slow
def test_cli_error_exit_code_and_single_line(tmp_path):
    _write(tmp_path / "bad.npz", test_labels=None)
    proc = subprocess.run([sys.executable, "-m", "simxir.cli", "eval", "--features", str(tmp_path / "bad.npz"),
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and json.loads(proc.stdout)["exit_code"] == 2   # --json: one object
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1


def test_parse_ks_and_argument_errors():
    assert parse_ks("21, 5,7,5") == [5, 7, 21]
    assert parse_ks("none") == []
    for bad in ("5,x", "0", "-3"):
        with pytest.raises(UserError):
            parse_ks(bad)
    for args in (["--features", "a.npz", "--encoder", "b.pt"], ["--encoder", "b.pt"], [],
                 ["--features", "a.npz", "--knn", "none", "--no-linear"]):
        res = CliRunner().invoke(_app(), ["eval", *args])
        assert isinstance(res.exception, UserError), args


@pytest.mark.slow
def test_encoder_path_saves_features_that_reproduce_the_result(tmp_path):
    import torch

    from simxir.models import build_backbone, save_encoder

    torch.manual_seed(0)
    save_encoder(build_backbone("convnet-small"), tmp_path / "enc.safetensors")
    args = ["eval", "--knn", "5,7", "--no-linear", "--device", "cpu", "--json"]
    res = CliRunner().invoke(_app(), [*args, "--encoder", str(tmp_path / "enc.safetensors"), "--data", "digits",
                                      "--save-features", str(tmp_path / "feats.npz")])
    assert res.exit_code == 0, res.output
    from_encoder = json.loads(res.stdout)
    tr, ytr, te, yte = load_features_npz(tmp_path / "feats.npz")
    assert tr.shape[1] == te.shape[1] and len(ytr) == len(tr) and len(yte) == len(te)
    res2 = CliRunner().invoke(_app(), [*args, "--features", str(tmp_path / "feats.npz")])
    assert res2.exit_code == 0, res2.output
    assert json.loads(res2.stdout) == from_encoder
    assert from_encoder["knn"]["cosine"]["5"] > 50.0   # even a random ConvNet separates digits well
