"""One error boundary (simxir.cli.main): usage errors, OS errors of writes and Ctrl-C outside
training end as one line and the exit code, with the JSON object under --json."""

from __future__ import annotations

import errno
import json
import sys

import pytest


def _main(argv, monkeypatch, capsys) -> tuple[int, list[str], str]:
    from simxir.cli import main

    monkeypatch.setattr(sys, "argv", ["simxir", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.err.splitlines(), out.out


@pytest.mark.parametrize("argv,message", [
    (["eval", "--bogus"], "No such option: --bogus"),
    (["eval", "--batch-size", "abc"], "Invalid value for '--batch-size'"),
    (["pretrain", "--method", "simsiam"], "Missing option '--out'"),
])
def test_usage_errors_are_one_line_and_json(argv, message, monkeypatch, capsys):
    code, err, out = _main([*argv, "--json"], monkeypatch, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    obj = json.loads(out)
    assert obj["status"] == "error" and obj["exit_code"] == 2 and message in obj["error"]


def test_a_full_disk_names_the_path(tmp_path, monkeypatch, capsys):
    import simxir.eval.features as features

    target = tmp_path / "feats.npz"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(features, "atomic_write_bytes", full)
    code, err, out = _main(["eval", "--encoder", _encoder(tmp_path), "--data", "digits", "--no-linear", "--knn", "5",
                            "--save-features", str(target), "--json"], monkeypatch, capsys)
    assert code == 2 and err[-1] == f"error: {target}: No space left on device [ENOSPC] (the disk is full)"
    assert json.loads(out)["exit_code"] == 2


def test_ctrl_c_during_evaluation_is_interrupted_130(tmp_path, monkeypatch, capsys):
    import simxir.eval.command as command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "evaluate_features", interrupted)
    code, err, out = _main(["eval", "--encoder", _encoder(tmp_path), "--data", "digits", "--json"], monkeypatch,
                           capsys)
    assert code == 130 and err[-1].startswith("interrupted: ") and json.loads(out)["exit_code"] == 130


def _encoder(tmp_path) -> str:
    from simxir.models import build_backbone, save_encoder

    path = tmp_path / "enc.safetensors"
    save_encoder(build_backbone("convnet-small"), path)
    return str(path)
