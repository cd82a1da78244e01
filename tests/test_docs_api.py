"""Every Python block of docs/guide/api.md runs, in order, in one namespace, in a fresh folder."""

from __future__ import annotations

import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guide" / "api.md"


def test_every_api_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    assert len(blocks) >= 6, "docs/guide/api.md lost its examples"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SIMXIR_QUIET", "1")
    namespace: dict = {"__name__": "api_guide"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{GUIDE}:block{i + 1}", "exec"), namespace)   # noqa: S102 - our own docs
    assert (tmp_path / "runs" / "simxir" / "encoder.safetensors").is_file()
    text = (tmp_path / "runs" / "simxir" / "config.yaml").read_text()
    assert "backbone: python:api_guide.MyEncoder" in text and "method_name: simxir" in text
