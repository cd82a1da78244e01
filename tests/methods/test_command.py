"""``simxir methods``: one JSON object listing every registered method with its config defaults."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from simxir.methods import CONFIGS


def test_methods_json_lists_registry_defaults() -> None:
    proc = subprocess.run([sys.executable, "-c", "from simxir.cli import main; main()", "methods", "--json"],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)  # the whole stdout is one JSON object
    assert set(data["methods"]) == set(CONFIGS)
    for name, cls in CONFIGS.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(data["methods"][name]["config"]) == fields
    assert data["methods"]["barlow_twins"]["config"]["lambd"] == 0.0051
    assert data["methods"]["moco"]["config"]["queue_size"] == 2048
