"""`simxir analyze` / `simxir theorem31`: --json objects, files written, plots, error paths."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from simxir.analysis import command as cmd
from simxir.analysis import runs
from simxir.errors import UserError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()
    a.command("analyze")(cmd.analyze_command)
    a.command("theorem31")(cmd.theorem_command)
    return a


def invoke(app, args):
    res = CliRunner().invoke(app, args)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def test_features_and_predictor_json(app, tmp_path):
    rng = np.random.default_rng(0)
    s = rng.standard_normal(200)
    feats = np.stack([s, s + 0.5 * rng.standard_normal(200), rng.standard_normal(200)], 1)
    np.savez(tmp_path / "f.npz", features=feats)
    c, si = math.cos(0.4), math.sin(0.4)
    np.save(tmp_path / "w.npy", 2.0 * np.array([[c, -si], [si, c]]))
    res = invoke(app, ["analyze", "--features", str(tmp_path / "f.npz"), "--json"])
    out = json.loads(res.stdout)
    assert set(out) == {"decorrelation"}
    r = np.corrcoef(feats, rowvar=False)
    assert out["decorrelation"] == pytest.approx(((r - np.eye(3)) ** 2).sum(), rel=1e-9)
    out = json.loads(invoke(app, ["analyze", "--predictor", str(tmp_path / "w.npy"), "--json"]).stdout)
    assert set(out) == {"asymmetry", "offdiag_energy", "dist_to_scaled_identity", "eigenvalues"}
    assert out["asymmetry"] == pytest.approx(2 * si)
    assert out["offdiag_energy"] == pytest.approx(si ** 2)
    assert out["dist_to_scaled_identity"] == pytest.approx(si)
    assert out["eigenvalues"] == pytest.approx([2 * c, 2 * c])


def test_collapsed_features_give_null_not_nan(app, tmp_path):
    np.savez(tmp_path / "c.npz", features=np.ones((20, 4), dtype=np.float32))
    res = invoke(app, ["analyze", "--features", str(tmp_path / "c.npz"), "--json"])
    assert json.loads(res.stdout) == {"decorrelation": None}  # strict JSON: NaN is not allowed


def _write_run(run, epochs=(1, 2, 3, 4, 5)):
    rows = ["epoch,loss,decorrelation"]
    for e in epochs:
        rows.append(f"{e},{1.0 / e},{'nan' if e == 2 else 10.0 / e}")
    (run / "metrics.csv").write_text("\n".join(rows) + "\n")
    (run / "predictor").mkdir()
    for e in epochs:
        np.save(run / "predictor" / f"epoch_{e:04d}.npy", np.diag([1.0 + e, 1.0, -0.5]) + 0.1 * e * np.eye(3, k=1))


def test_run_folder(app, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    _write_run(run)
    res = invoke(app, ["analyze", str(run), "--json", "--epochs", "1,5"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["decorrelation"] == pytest.approx(2.0)
    assert out["decorrelation_curve"]["value"][1] is None and out["decorrelation_curve"]["epoch"] == [1, 2, 3, 4, 5]
    assert out["predictor_epoch"] == 5
    w5 = np.diag([6.0, 1.0, -0.5]) + 0.5 * np.eye(3, k=1)
    assert out["offdiag_energy"] == pytest.approx(2 * 0.25 / (w5 ** 2).sum())  # two entries of 0.5
    assert out["eigenvalues"] == pytest.approx([6.0, 1.0, -0.5])
    assert [row[0] for row in out["predictor_history"]["eigenvalues"]] == pytest.approx([2, 3, 4, 5, 6])
    names = {p.split("/")[-1] for p in out["plots"]}
    assert names == {"decorrelation.png", "predictor_heatmaps.png", "predictor_eigenvalues.png",
                     "predictor_diagnostics.png"}
    for p in out["plots"]:
        assert (run / "analysis" / p.split("/")[-1]).read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((run / "analysis" / "analysis.json").read_text())
    assert saved["decorrelation"] == out["decorrelation"]
    # eigen-decomposition limited to evenly spaced snapshots, first and last kept
    out = json.loads(invoke(app, ["analyze", str(run), "--json", "--max-eig-snapshots", "3"]).stdout)
    hist = out["predictor_history"]
    assert hist["eigenvalue_epoch"] == [1, 3, 5] and len(hist["eigenvalues"]) == 3
    assert len(hist["asymmetry"]) == 5 and out["eigenvalues"] == pytest.approx([6.0, 1.0, -0.5])


def test_checkpoint(app, tmp_path):
    w = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
    ckpt = {"version": 1, "epoch": 7, "model": {"backbone.conv.weight": torch.zeros(2, 3, 1, 1),
                                                "predictor.weight": w},
            "history": [{"epoch": 6, "decorrelation": 4.0}, {"epoch": 7, "decorrelation": 3.0}]}
    torch.save(ckpt, tmp_path / "checkpoint.pt")
    out = json.loads(invoke(app, ["analyze", str(tmp_path / "checkpoint.pt"), "--out", str(tmp_path / "o"),
                                  "--json"]).stdout)
    assert out["decorrelation"] == 3.0 and out["predictor_epoch"] == 7
    assert out["asymmetry"] == pytest.approx(math.sqrt(8 / 14))
    assert (tmp_path / "o" / "decorrelation.png").read_bytes()[:8] == PNG_MAGIC


def test_theorem_command(app, tmp_path):
    res = invoke(app, ["theorem31", "--eta", "0.2", "--eta", "0.4", "--variant", "exact", "--lr", "0.01",
                       "--e-folds", "1.5", "--out", str(tmp_path), "--json"])
    out = json.loads(res.stdout)
    assert out["exact_within_10pct"] is True and [r["eta"] for r in out["runs"]] == [0.2, 0.4]
    assert all("curves" not in r for r in out["runs"])
    assert (tmp_path / "theorem31.png").read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((tmp_path / "theorem31.json").read_text())
    assert len(saved["runs"][0]["curves"]["t"]) == saved["config"]["points"]


@pytest.mark.parametrize("args, match", [
    (["analyze"], "give a run folder"),
    (["analyze", "nowhere"], "no such run folder"),
    (["analyze", "--features", "missing.npz"], "no such file"),
    (["analyze", "--predictor", "missing.npy"], "no such file"),
    (["theorem31", "--eta", "-1"], "--eta"),
])
def test_user_errors(app, args, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, UserError) and match in str(res.exception)


def test_bad_feature_files(tmp_path):
    np.savez(tmp_path / "x.npz", feats=np.zeros((3, 2)))
    with pytest.raises(UserError, match=r"missing key\(s\) features"):
        runs.load_features(tmp_path / "x.npz")
    np.savez(tmp_path / "y.npz", features=np.zeros(3))
    with pytest.raises(UserError, match="n x d"):
        runs.load_features(tmp_path / "y.npz")
    (tmp_path / "m.csv").write_text("epoch,loss\n1,2\n")
    with pytest.raises(UserError, match="no 'decorrelation' column"):
        runs.read_decorrelation_csv(tmp_path / "m.csv")


@pytest.mark.slow
def test_entry_point_json_and_error_exit(tmp_path):
    np.save(tmp_path / "w.npy", np.eye(3))
    run = [sys.executable, "-c", "from simxir.cli import main; main()"]
    ok = subprocess.run(run + ["analyze", "--predictor", str(tmp_path / "w.npy"), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"asymmetry": 0.0, "offdiag_energy": 0.0, "dist_to_scaled_identity": 0.0,
                                     "eigenvalues": [1.0, 1.0, 1.0]}
    bad = subprocess.run(run + ["analyze", "--predictor", str(tmp_path / "nope.npy"), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: --predictor")
    # --json promises one JSON object on stdout, also when the command fails
    err = json.loads(bad.stdout)
    assert err["status"] == "error" and err["exit_code"] == 2 and err["error"].startswith("--predictor")
    assert "nope.npy" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_features_from_a_plain_npy_and_bad_npy(tmp_path):
    arr = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "f.npy", arr)
    np.testing.assert_array_equal(runs.load_features(tmp_path / "f.npy"), arr)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="--features .*bad.npy: not a readable .npy"):
        runs.load_features(tmp_path / "bad.npy")
    with pytest.raises(UserError, match="no such file"):
        runs.load_features(tmp_path / "absent.npy")


def test_analyze_reads_the_features_file_that_eval_writes(tmp_path, cli):
    from simxir.analysis.runs import load_features
    from simxir.eval.features import save_features_npz

    tr, te = torch.randn(20, 6), torch.randn(8, 6)
    save_features_npz(tmp_path / "feats.npz", tr, torch.zeros(20, dtype=torch.long), te,
                      torch.zeros(8, dtype=torch.long))
    np.testing.assert_array_equal(load_features(tmp_path / "feats.npz"), tr.numpy())
    r = cli(["analyze", "--features", tmp_path / "feats.npz", "--json"])
    assert r.code == 0, r.err_lines
    assert "decorrelation" in r.out
    np.savez(tmp_path / "other.npz", x=np.zeros((3, 2)))
    with pytest.raises(UserError, match="missing key.*features.*found x"):
        load_features(tmp_path / "other.npz")
