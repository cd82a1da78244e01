"""``simxir finetune`` end to end: a MoCo-layout checkpoint in, before/after tables, report files,
the encoder exported in its own layout, --json, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from simxir.eval.paired import call, outcome_cells, paired_change
from simxir.models import build_backbone, load_encoder


def _run(args, cwd):
    env = dict(os.environ, SIMXIR_QUIET="1")
    return subprocess.run([sys.executable, "-m", "simxir.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_finetune_moco_checkpoint_end_to_end(tmp_path):
    torch.manual_seed(0)
    enc = build_backbone("convnet-small")
    sd = {f"module.encoder_q.{k}": v for k, v in enc.state_dict().items()}
    sd.update({f"module.encoder_k.{k}": v + 1 for k, v in enc.state_dict().items()})  # momentum copy
    sd["module.queue"] = torch.randn(128, 16)
    torch.save({"state_dict": sd, "epoch": 200}, tmp_path / "moco.pth.tar")

    r = _run(["finetune", "--encoder", "moco.pth.tar", "--data", "digits", "--out", "run",
              "--linear-epochs", "5", "--json", "epochs=2", "batch_size=256", "augment=tiny",
              "--rounds", "2", "tensorboard=false"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)                       # exactly one JSON object on stdout
    assert set(result) == {"before", "after", "label_free_change", "paired", "encoder"}
    # every kNN and linear cell paired image by image, as paired_change computes it from the outcomes
    assert set(result["paired"]) == {f"kNN {m} k={k}" for m in ("cos", "euc") for k in (5, 7, 11, 15, 17, 21)} | {
        "linear top-1", "linear top-5"}
    cells_b, cells_a = outcome_cells(result["before"]), outcome_cells(result["after"])
    for name, got in result["paired"].items():
        want = paired_change(cells_b[name], cells_a[name], seed=0)
        assert {k: got[k] for k in want} == pytest.approx(want)
        assert got["call"] == call(want)
    assert result["paired"]["kNN cos k=11"]["before"] == pytest.approx(result["before"]["knn"]["cosine"]["11"])
    assert set(result["label_free_change"]) == {"rankme", "alignment", "uniformity", "within", "between", "ratio"}
    for side in ("before", "after"):
        knn = result[side]["knn"]
        assert set(knn) == {"cosine", "euclidean"}
        assert set(knn["cosine"]) == {"5", "7", "11", "15", "17", "21"}
        assert 0 <= result[side]["linear"]["top1"] <= result[side]["linear"]["top5"] <= 100
    run = tmp_path / "run"
    for name in ("report.md", "results.json", "knn_over_k.png", "before.json", "after.json",
                 "encoder.safetensors", "encoder.moco.pt", "checkpoint.pt", "metrics.csv"):
        assert (run / name).is_file(), name
    report = (run / "report.md").read_text()
    assert "| after |" in report and "| change |" in report and "k=21" in report
    assert "| kNN cos k=11 |" in report and "McNemar p" in report
    saved = json.loads((run / "results.json").read_text())
    assert saved["config"]["method"]["epochs_per_round"] == 1
    assert saved["load_report"]["format"] == "moco"
    # exported in the layout it came in, momentum copy and queue kept, online weights updated
    back, rep = load_encoder(run / "encoder.moco.pt")
    assert rep.format == "moco"
    tuned, _ = load_encoder(run / "encoder.safetensors")
    for k, v in tuned.state_dict().items():
        torch.testing.assert_close(back.state_dict()[k], v)
    raw = torch.load(run / "encoder.moco.pt", weights_only=True)["state_dict"]
    torch.testing.assert_close(raw["module.encoder_k.features.0.weight"],
                               enc.state_dict()["features.0.weight"] + 1)
    assert not torch.equal(raw["module.encoder_q.features.0.weight"], enc.state_dict()["features.0.weight"])


@pytest.mark.parametrize("extra,needle", [
    (["--encoder", "missing.pt"], "missing.pt"),
    (["--encoder", "x.pt", "epochz=3"], "unknown key 'epochz'"),
    (["--encoder", "x.pt", "--rounds", "3", "epochs=4"], "not a multiple"),
    (["--encoder", "x.pt", "--variant", "dagger"], "--variant"),
])
def test_finetune_bad_input_is_one_line(tmp_path, monkeypatch, cli, extra, needle):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMXIR_QUIET", "1")
    r = cli(["finetune", "--data", "digits", "--out", "run", *extra])
    assert r.code == 2 and r.err_lines == [r.error] and needle in r.error


def test_resume_without_before_json_evaluates_the_original_encoder_again(tmp_path, cli):
    from simxir.models import build_backbone, save_encoder

    torch.manual_seed(0)
    save_encoder(build_backbone("convnet-small"), tmp_path / "enc.safetensors")
    run = tmp_path / "run"
    args = ["finetune", "--encoder", tmp_path / "enc.safetensors", "--data", "digits", "--out", run, "epochs=1",
            "batch_size=256", "tensorboard=false", "--no-linear", "--knn", "5", "--label-free-images", "0", "--json"]
    assert cli(args).code == 0
    before = json.loads((run / "before.json").read_text())
    (run / "before.json").unlink()                   # lost, e.g. deleted after a damaged write
    again = cli([*args, "--resume"])
    assert again.code == 0, again.err_lines
    assert json.loads((run / "before.json").read_text()) == before and again.json["before"] == before
