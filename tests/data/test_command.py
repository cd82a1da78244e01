"""`simxir data info SPEC [--json]` and the spec parser's errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from simxir.data import load_dataset, parse_spec
from simxir.data.command import data_app
from simxir.errors import UserError


def test_parse_spec_errors() -> None:
    with pytest.raises(UserError) as err:
        load_dataset("imagenet:/x")
    for scheme in ("cifar10", "cifar100", "svhn", "folder", "npz", "digits"):
        assert scheme in str(err.value)
    with pytest.raises(UserError, match="npz:FILE"):
        parse_spec("npz:")
    with pytest.raises(UserError, match="no path"):
        parse_spec("digits:/x")
    assert parse_spec("folder:/a:b") == ("folder", "/a:b")


def test_info_json_in_process(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, size=(6, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.array([0, 1, 1, 0, 1, 1]), x_test=x[:2],
             y_test=np.array([1, 0]), classes=np.array(["no", "yes"]))
    r = CliRunner().invoke(data_app, ["info", f"npz:{tmp_path / 'd.npz'}", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["train_size"] == 6 and info["test_size"] == 2 and info["image_size"] == 4
    assert info["classes"] == ["no", "yes"] and info["train_class_counts"] == [2, 4]
    assert info["mean"] == pytest.approx(list(x.astype(float).mean(axis=(0, 1, 2)) / 255))
    r = CliRunner().invoke(data_app, ["info", f"npz:{tmp_path / 'd.npz'}", "--image-size", "2"])
    assert r.exit_code == 0 and "2x2" in r.stdout


def test_cli_error_exit(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from simxir.cli import main

    monkeypatch.setattr(sys, "argv", ["simxir", "data", "info", "nope:x", "--json"])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    assert exc.value.code == 2 and json.loads(out.out)["status"] == "error"   # --json: one object
    assert out.err.startswith("error: ") and out.err.count("\n") == 1 and "nope" in out.err


@pytest.mark.slow
def test_cli_json_stdout_subprocess() -> None:
    env = {**os.environ, "SIMXIR_QUIET": "1"}
    cmd = [sys.executable, "-c", "from simxir.cli import main; main()", "data", "info", "digits", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)  # exactly one JSON object on stdout, nothing else
    assert info["name"] == "digits" and info["train_size"] == 1437 and info["num_classes"] == 10
