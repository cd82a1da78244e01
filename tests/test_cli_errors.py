"""One error boundary (simxir.cli.main): usage errors, OS errors of writes and Ctrl-C outside
training end as one line and the exit code, with the JSON object under --json."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest


@pytest.mark.parametrize("argv,message", [
    (["eval", "--bogus"], "No such option: --bogus"),
    (["eval", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    (["pretrain", "--method", "simsiam"], "Missing option '--out'"),
])
def test_usage_errors_are_one_line_and_json(argv, message, cli):
    r = cli([*argv, "--json"])
    assert r.code == 2 and len(r.err_lines) == 1 and message in r.error
    obj = r.json
    assert obj["status"] == "error" and obj["exit_code"] == 2 and message in obj["error"]


def test_a_full_disk_names_the_path(tmp_path, monkeypatch, cli):
    import simxir.eval.features as features

    target = tmp_path / "feats.npz"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(features, "atomic_write_bytes", full)
    r = cli(["eval", "--encoder", _encoder(tmp_path), "--data", "digits", "--no-linear", "--knn", "5",
             "--save-features", target, "--json"])
    assert r.code == 2 and r.err_lines[-1] == f"error: {target}: No space left on device [ENOSPC] (the disk is full)"
    assert r.json["exit_code"] == 2


def test_ctrl_c_during_evaluation_is_interrupted_130(tmp_path, monkeypatch, cli):
    import simxir.eval.command as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "evaluate", interrupted)
    r = cli(["eval", "--encoder", _encoder(tmp_path), "--data", "digits", "--json"])
    assert r.code == 130 and r.err_lines[-1].startswith("interrupted: ") and r.json["exit_code"] == 130


def _encoder(tmp_path) -> str:
    from simxir.models import build_backbone, save_encoder

    path = tmp_path / "enc.safetensors"
    save_encoder(build_backbone("convnet-small"), path)
    return str(path)


@pytest.mark.parametrize("code,reason,hint", [(errno.ENOSPC, "No space left on device", "the disk is full"),
                                              (errno.EROFS, "Read-only file system", "a read-only file system")])
def test_a_full_or_read_only_disk_during_training_names_the_checkpoint(tmp_path, monkeypatch, cli, code, reason, hint):
    import os

    import simxir.io

    real_fsync = os.fsync

    def full(fd):   # the disk fills up when the first checkpoint is written
        if ".checkpoint.pt." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, reason)
        real_fsync(fd)

    monkeypatch.setattr(simxir.io.os, "fsync", full)
    run = tmp_path / "run"
    r = cli(["pretrain", "--method", "simsiam", "--data", "digits", "--out", run, "epochs=1", "tensorboard=false",
             "--json"])
    assert r.code == 2 and r.json["exit_code"] == 2
    assert r.error == f"error: {run / 'checkpoint.pt'}: {reason} [{errno.errorcode[code]}] ({hint})"
    assert not [n for n in os.listdir(run) if n.endswith(".tmp")]


def test_an_output_path_that_is_a_directory_is_one_line(tmp_path, cli):
    enc = _encoder(tmp_path)
    folder = tmp_path / "a_folder"
    folder.mkdir()
    for argv in (["eval", "--encoder", enc, "--data", "digits", "--no-linear", "--knn", "5", "--save-features", folder],
                 ["export-encoder", enc, folder, "--to", "torchvision"]):
        r = cli([*argv, "--json"])
        assert r.code == 2 and r.error == f"error: {folder}: Is a directory [EISDIR]", r.err_lines[-2:]
        assert r.json["exit_code"] == 2 and not list(folder.iterdir())


@pytest.mark.slow
def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "simxir.cli", "pretrain", "--method", "simclr", "--out", str(out),
                             "epochs=500", "tensorboard=false", "monitor.eval_size=64", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "SIMXIR_QUIET": "1"},
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
    r = subprocess.run([sys.executable, "-m", "simxir.cli", "pretrain", "--out", str(out), "--resume", "epochs=3",
                        "--json"], capture_output=True, text=True, timeout=180, cwd=tmp_path,
                       env={**os.environ, "SIMXIR_QUIET": "1"})
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["epochs"]) == 3
