"""`simxir dynamics ...` end to end: --json on stdout, OUT.npz, errors; experiments write files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simxir.dynamics.command import run_command
from simxir.dynamics.experiments import (
    embeddings_experiment,
    groups_experiment,
    iris_experiment,
    load_embedding_inputs,
    overlap_experiment,
)
from simxir.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / ".." / "shared" / "data" / "cifar10-1k.npz"


def entry_point(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, SIMXIR_QUIET="1")
    return subprocess.run([sys.executable, "-m", "simxir.cli", *args], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=120)


@pytest.mark.slow
def test_run_json_and_out(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 0.3, (40, 2)), rng.uniform(0.7, 1.0, (30, 2))])
    reps = rng.standard_normal((70, 3))
    np.savez(tmp_path / "pts.npz", inputs=x, reps=reps)
    out = tmp_path / "out.npz"
    r = entry_point("dynamics", "run", "--input", str(tmp_path / "pts.npz"), "--eps", "0.2", "--steps", "6",
            "--every", "2", "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)                         # exactly one JSON object on stdout
    assert obj["steps"] == [0, 2, 4, 6] and obj["n"] == 70 and obj["groups_closed"] is True
    D = np.array(obj["metrics"]["diameter"])
    assert D.shape == (4, obj["num_groups"]) and (np.diff(D, axis=0) < 0).all()
    z = np.load(out)
    # final reps equal six literal averaging steps
    f = reps.copy()
    for _ in range(6):
        d = np.linalg.norm(x[:, None] - x[None], axis=-1)
        f = np.stack([f[d[i] < 0.2].mean(0) for i in range(70)])
    assert np.abs(z["reps"] - f).max() < 1e-10
    assert np.allclose(z["diameter"], D)


def test_run_knn_groups_spherical_in_process(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "p.npz", inputs=rng.random((50, 2)), groups=np.repeat([3, 7], 25))
    run_command(input=str(tmp_path / "p.npz"), eps=None, knn=5, closed=False, weights="gaussian", sigma=None,
                index="auto", steps=3, spherical=True, every=1, dim=4, seed=0, device="cpu", float32=True,
                out=None, json_out=True)
    obj = json.loads(capsys.readouterr().out)
    assert obj["num_groups"] == 2 and obj["reps_dim"] == 4 and obj["spherical"]
    assert not obj["groups_closed"] or obj["num_components"] == 1


def test_run_errors_exit_code(tmp_path, cli):
    np.savez(tmp_path / "p.npz", inputs=np.random.default_rng(0).random((10, 2)))
    r = cli(["dynamics", "run", "--input", tmp_path / "p.npz", "--eps", "0.1", "--knn", "3", "--json"])
    assert r.code == 2 and "exactly one" in r.error
    assert r.json["error"] == r.error.removeprefix("error: ")   # --json: one object


def _run(path, **kw):
    args = dict(input=str(path), eps=None, knn=None, closed=False, weights="uniform", sigma=None, index="auto",
                steps=2, spherical=False, every=1, dim=2, seed=0, device="cpu", float32=False, out=None,
                json_out=True)
    args.update(kw)
    run_command(**args)


@pytest.mark.parametrize("kw,needle", [
    (dict(eps=-1.0), "eps"),
    (dict(knn=3, every=0), "every"),
    (dict(knn=3, weights="cosine"), "weights"),
    (dict(knn=30), "k"),
    (dict(knn=3, device="tpu"), "device"),
])
def test_run_errors(tmp_path, kw, needle):
    np.savez(tmp_path / "p.npz", inputs=np.random.default_rng(0).random((10, 2)))
    with pytest.raises(UserError, match=needle):
        _run(tmp_path / "p.npz", **kw)


def test_run_bad_files(tmp_path):
    np.savez(tmp_path / "p.npz", points=np.zeros((3, 2)))
    with pytest.raises(UserError, match=r"--input .*p.npz: missing key\(s\) inputs .*found points"):
        _run(tmp_path / "p.npz", knn=2)
    with pytest.raises(UserError, match="no such file"):
        _run(tmp_path / "missing.npz", knn=2)
    np.savez(tmp_path / "q.npz", inputs=np.zeros((3, 2)), reps=np.zeros((4, 2)))
    with pytest.raises(UserError, match="'reps'"):
        _run(tmp_path / "q.npz", knn=2)
    (tmp_path / "r.npz").write_text("not a zip")
    with pytest.raises(UserError, match="readable"):
        _run(tmp_path / "r.npz", knn=2)


def test_groups_and_overlap_experiments_write_files(tmp_path):
    r = groups_experiment(tmp_path, n_per_group=25, steps=20, panels=(0, 5, 20))
    assert r["num_groups"] == 4
    for mode in ("unconstrained", "spherical"):
        assert r[mode]["diameter_strictly_decreasing_fraction"] == 1.0
        assert len(r[mode]["mean_drift"]) == 21             # drift reported, not asserted
    assert (tmp_path / "groups.png").stat().st_size > 0
    assert json.loads((tmp_path / "groups.json").read_text())["steps"] == 20
    o = overlap_experiment(tmp_path, n_per_group=25, steps=30)
    assert o["cross_group_neighbour_pairs"] > 0 and (tmp_path / "overlap.png").exists()


def test_iris_experiment_small(tmp_path):
    r = iris_experiment(tmp_path, steps=(0, 50), seeds=2)
    assert r["num_components"] >= 1 and 0.5 < r["before"] <= 1 and (tmp_path / "iris.png").exists()


def test_embeddings_from_features_file(tmp_path):
    rng = np.random.default_rng(3)
    means = rng.standard_normal((3, 16)) * 2
    ytr, yte = rng.integers(0, 3, 90), rng.integers(0, 3, 30)
    ftr = means[ytr] + rng.standard_normal((90, 16))
    fte = means[yte] + rng.standard_normal((30, 16))
    np.savez(tmp_path / "f.npz", train_features=ftr.astype(np.float32), train_labels=ytr,
             test_features=fte.astype(np.float32), test_labels=yte)
    tr, a, te, b, src = load_embedding_inputs(str(tmp_path / "f.npz"), None, None)
    r = embeddings_experiment(tr, a, te, b, src, tmp_path, k_graph=5, steps=4, k_eval=5)
    assert r["steps"] == [0, 1, 2, 3, 4] and all(0 <= v <= 100 for v in r["knn_top1"])
    assert (tmp_path / "embeddings.json").exists()


@pytest.mark.shared
def test_embeddings_raw_pixels_shared(tmp_path):
    if not SHARED.is_file():
        pytest.skip(f"needs the shared CIFAR-10 subset at {SHARED}")
    tr, a, te, b, src = load_embedding_inputs(None, str(SHARED), None, max_train=300, max_test=100)
    assert tr.shape == (300, 3072) and tr.dtype == torch.float32
    r = embeddings_experiment(tr, a, te, b, src, None, steps=2, k_eval=5)
    assert len(r["knn_top1"]) == 3


def test_the_default_output_is_a_folder_in_the_working_directory_not_the_checkouts_results(tmp_path, cli,
                                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli(["dynamics", "iris", "--json"])
    assert r.code == 0 and (tmp_path / "dynamics_out" / "iris.png").exists()
    assert not (tmp_path / "results").exists()
