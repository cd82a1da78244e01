"""A run folder owns its contents (simxir.rundir): a held lock refuses a second run, a folder with
a run in it is refused without --resume/--overwrite, a run never replaces its own input, an empty
or file --out is refused, and temporaries of a killed atomic write are removed."""

from __future__ import annotations

import json
import os

import pytest

from simxir.rundir import MARKER, own_run_folder

FAST = ["epochs=1", "batch_size=256", "tensorboard=false", "precision=fp32", "monitor.eval_size=64",
        "checkpoint_interval_s=0"]


@pytest.fixture
def pretrain(cli):
    """``pretrain(out, *extra)``: a short SimSiam run on digits with --json -> (code, error line, JSON)."""
    def run(out, *extra):
        r = cli(["pretrain", "--method", "simsiam", "--data", "digits", "--out", out, *FAST, *extra, "--json"])
        return r.code, r.error, r.json

    return run


def test_a_folder_in_use_is_refused_naming_its_holder(tmp_path, pretrain):
    run = tmp_path / "run"
    with own_run_folder(run):
        holder = json.loads((run / MARKER).read_text())
        code, err, obj = pretrain(run)
    assert code == 2 and obj["exit_code"] == 2
    assert f"--out {run}: in use by another run, pid {os.getpid()}" in err and holder["pid"] == os.getpid()
    assert not (run / "config.yaml").exists()
    code, _, obj = pretrain(run)     # released: the folder is free again
    assert code == 0 and obj["encoder"]


@pytest.mark.slow
def test_finished_runs_and_inputs_are_never_replaced_without_a_word(tmp_path, pretrain, cli):
    run = tmp_path / "run"
    assert pretrain(run)[0] == 0
    (run / "checkpoint.pt").unlink()                        # a finished run whose checkpoint was deleted
    before = (run / "encoder.safetensors").read_bytes()
    code, err, _ = pretrain(run)
    assert code == 2 and "already holds a run (config.yaml, encoder.pt, encoder.safetensors" in err
    assert "--resume" in err and "--overwrite" in err
    assert (run / "encoder.safetensors").read_bytes() == before
    # finetune into the folder its encoder lives in: refused, the input untouched
    r = cli(["finetune", "--encoder", run / "encoder.safetensors", "--data", "digits", "--out", run, "--overwrite",
             "epochs=1", "--json"])
    assert r.code == 2 and "would overwrite its input" in r.error
    assert (run / "encoder.safetensors").read_bytes() == before
    # --overwrite replaces the earlier run's outputs; a killed atomic write's temporary is removed
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (run / "predictor").mkdir(exist_ok=True)
    (run / "predictor" / "old.npy").write_bytes(b"x")
    code, _, obj = pretrain(run, "--overwrite", "seed=1")
    assert code == 0 and obj["encoder"]
    assert not (run / ".checkpoint.pt.x1y2.tmp").exists() and not (run / "predictor" / "old.npy").exists()
    assert (run / "encoder.safetensors").read_bytes() != before


def test_empty_and_file_out_are_refused(tmp_path, monkeypatch, pretrain):
    monkeypatch.chdir(tmp_path)
    code, err, _ = pretrain("")
    assert code == 2 and "--out: empty" in err and not os.listdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, err, _ = pretrain(tmp_path / "afile")
    assert code == 2 and "afile: is a file" in err
