"""A run folder owns its contents (simxir.rundir): a held lock refuses a second run, a folder with
a run in it is refused without --resume/--overwrite, a run never replaces its own input, an empty
or file --out is refused, and temporaries of a killed atomic write are removed."""

from __future__ import annotations

import json
import os
import sys

import pytest

from simxir.rundir import MARKER, own_run_folder

FAST = ["epochs=1", "batch_size=256", "tensorboard=false", "precision=fp32", "monitor.eval_size=64",
        "checkpoint_interval_s=0"]


def _main(argv, monkeypatch, capsys) -> tuple[int, str, dict]:
    from simxir.cli import main

    monkeypatch.setattr(sys, "argv", ["simxir", *argv, "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("error: ")]
    return int(exc.value.code or 0), errors[0] if errors else "", json.loads(out.out)


def _pretrain(out, monkeypatch, capsys, *extra):
    return _main(["pretrain", "--method", "simsiam", "--data", "digits", "--out", str(out), *FAST, *extra],
                 monkeypatch, capsys)


def test_a_folder_in_use_is_refused_naming_its_holder(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    with own_run_folder(run):
        holder = json.loads((run / MARKER).read_text())
        code, err, obj = _pretrain(run, monkeypatch, capsys)
    assert code == 2 and obj["exit_code"] == 2
    assert f"--out {run}: in use by another run, pid {os.getpid()}" in err and holder["pid"] == os.getpid()
    assert not (run / "config.yaml").exists()
    code, _, obj = _pretrain(run, monkeypatch, capsys)     # released: the folder is free again
    assert code == 0 and obj["encoder"]


@pytest.mark.slow
def test_finished_runs_and_inputs_are_never_replaced_without_a_word(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert _pretrain(run, monkeypatch, capsys)[0] == 0
    (run / "checkpoint.pt").unlink()                        # a finished run whose checkpoint was deleted
    before = (run / "encoder.safetensors").read_bytes()
    code, err, _ = _pretrain(run, monkeypatch, capsys)
    assert code == 2 and "already holds a run (config.yaml, encoder.pt, encoder.safetensors" in err
    assert "--resume" in err and "--overwrite" in err
    assert (run / "encoder.safetensors").read_bytes() == before
    # finetune into the folder its encoder lives in: refused, the input untouched
    code, err, _ = _main(["finetune", "--encoder", str(run / "encoder.safetensors"), "--data", "digits", "--out",
                          str(run), "--overwrite", "epochs=1"], monkeypatch, capsys)
    assert code == 2 and "would overwrite its input" in err
    assert (run / "encoder.safetensors").read_bytes() == before
    # --overwrite replaces the earlier run's outputs; a killed atomic write's temporary is removed
    (run / ".checkpoint.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    (run / "predictor").mkdir(exist_ok=True)
    (run / "predictor" / "old.npy").write_bytes(b"x")
    code, _, obj = _pretrain(run, monkeypatch, capsys, "--overwrite", "seed=1")
    assert code == 0 and obj["encoder"]
    assert not (run / ".checkpoint.pt.x1y2.tmp").exists() and not (run / "predictor" / "old.npy").exists()
    assert (run / "encoder.safetensors").read_bytes() != before


def test_empty_and_file_out_are_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err, _ = _pretrain("", monkeypatch, capsys)
    assert code == 2 and "--out: empty" in err and not os.listdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    code, err, _ = _pretrain(tmp_path / "afile", monkeypatch, capsys)
    assert code == 2 and "afile: is a file" in err
