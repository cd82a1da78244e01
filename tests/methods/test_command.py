"""``simxir methods``: one JSON object listing every registered method with its config defaults."""

from __future__ import annotations

import dataclasses
import json

import typer
from typer.testing import CliRunner

from simxir.methods import CONFIGS
from simxir.methods.command import methods_command


def test_methods_json_lists_registry_defaults() -> None:
    app = typer.Typer()
    app.command()(methods_command)
    result = CliRunner().invoke(app, ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # the whole stdout is one JSON object
    assert set(data["methods"]) == set(CONFIGS)
    for name, cls in CONFIGS.items():
        fields = {f.name for f in dataclasses.fields(cls)}
        assert set(data["methods"][name]["config"]) == fields
    assert data["methods"]["barlow_twins"]["config"]["lambd"] == 0.0051
    assert data["methods"]["moco"]["config"]["queue_size"] == 2048
    text = CliRunner().invoke(app, []).stdout
    assert "bridge:" in text and "method.partitions=1" in text


def test_methods_show_their_training_defaults() -> None:
    from simxir.train.assemble import build_config

    app = typer.Typer()
    app.command()(methods_command)
    data = json.loads(CliRunner().invoke(app, ["--json"]).stdout)
    for name, entry in data["methods"].items():
        cfg = build_config(name, None, [])
        for key, value in entry["train_defaults"].get("optim", {}).items():
            assert getattr(cfg.optim, key) == value      # what is listed is what a run gets
    assert data["methods"]["moco"]["train_defaults"] == {}
    assert "optim.name=\"adamw\"  (method default)" in CliRunner().invoke(app, []).stdout
