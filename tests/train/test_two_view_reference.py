"""Every method's two-view step losses (and the linear protocol's probe) are those recorded on main
before views became a sequence (benchmarks/two_view_reference.py wrote two_view_reference.json):
bit for bit on the kind of CPU and torch it was recorded with, else within float rounding."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = Path(__file__).with_name("two_view_reference.json")


def _script():
    spec = importlib.util.spec_from_file_location("two_view_reference", ROOT / "benchmarks" / "two_view_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_two_view_runs_reproduce_the_recorded_losses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    try:
        now = _script().record()
    finally:
        torch.set_num_threads(threads)
    ref = json.loads(REFERENCE.read_text())
    assert set(now["runs"]) == set(ref["runs"])
    same_machine = (ref["torch"], ref["cpu"], ref["machine"]) == (now["torch"], now["cpu"], now["machine"])
    for name, losses in ref["runs"].items():
        if same_machine:
            assert now["runs"][name] == losses, name          # every bit
        else:   # other kernels: the same run up to float rounding
            a = [float.fromhex(v) for v in now["runs"][name]]
            b = [float.fromhex(v) for v in losses]
            assert a == pytest.approx(b, rel=1e-4, abs=1e-6), name
