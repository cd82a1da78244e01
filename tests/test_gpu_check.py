"""The prepared device check cannot rot: every section runs at toy sizes on this CPU and prints its
JSON line, and a section that raises still lets the others report."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_section_reports_at_toy_sizes_on_the_cpu(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--device", "cpu", "--quick",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    names = [line["section"] for line in lines]
    assert names[-1] == "summary" and lines[-1]["ok"], lines[-1]
    assert names[:-1] == list(_module().SECTIONS)
    by = {line["section"]: line for line in lines}
    assert all(line["ok"] for line in lines), [line for line in lines if not line["ok"]]
    assert by["sync_probe"]["skipped"].startswith("needs CUDA")
    # one synchronization per step (the loss read) for every method on the path a GPU takes
    assert {m: v["per_step"] for m, v in by["syncs"]["methods"].items()} == dict.fromkeys(by["syncs"]["methods"], 1.0)
    assert by["two_ranks"]["equal_rtol_1e-4"]
    assert (tmp_path / "gpu_check.jsonl").read_text().count("\n") == len(lines)
    assert (tmp_path / "gpu_check.log").is_file()


def _module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gc)
    return gc


def test_a_section_that_raises_still_lets_the_others_report(tmp_path, capsys):
    gc = _module()
    c = gc.Check(torch.device("cpu"), True, tmp_path)

    def broken(_):  # noqa: ANN001, ANN202
        raise RuntimeError("no GPU today")

    c.run("broken", broken)
    c.run("preflight", gc.preflight)
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out[0]["section"] == "broken" and not out[0]["ok"] and "no GPU today" in out[0]["error"]
    assert out[1]["section"] == "preflight" and out[1]["ok"] and out[1]["imports"]["simxir"]
