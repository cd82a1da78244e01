"""W&B (offline run files) and MLflow (the run folder's local store) hold the same epoch metrics as
metrics.csv, the config and the final results; a missing tracker package is one line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from simxir.errors import UserError


def _wandb_records(path: Path):
    """The protobuf records of a W&B run file (``:W&B`` header, then LevelDB-log blocks of 32 KiB)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if length == 0 and kind == 0:
            pos += left
            continue
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):          # a full record, or the last fragment of one
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def _items(items) -> dict:
    return {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}


@pytest.mark.slow
def test_wandb_offline_and_mlflow_local_hold_what_metrics_csv_holds(tmp_path, cli, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra (pip install 'simxir[wandb]')")
    pytest.importorskip("mlflow", reason="the mlflow extra (pip install 'simxir[mlflow]')")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    r = cli(["pretrain", "--method", "simsiam", "--data", "digits", "--out", "run", "epochs=3", "batch_size=256",
             "tensorboard=false", "logging.backends=[csv,wandb,mlflow]", "logging.project=simxir-test", "--json"])
    assert r.code == 0, r.err_lines
    assert set(r.json) >= {"epochs", "encoder"}                      # stdout: still one JSON object
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 3

    run_file = next((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    history, summary, config = [], {}, {}
    for rec in _wandb_records(run_file):
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(rec.history.item))
        elif kind == "summary":
            summary.update(_items(rec.summary.update))
        elif kind == "config":
            config.update(_items(rec.config.update))
        elif kind == "run":                                   # the config given to wandb.init
            config.update(_items(rec.run.config.update))
    assert [h["epoch/loss"] for h in history if "epoch/loss" in h] == pytest.approx(losses, rel=1e-6)
    assert config["batch_size"] == 256 and config["method_name"] == "simsiam"
    assert summary["loss"] == pytest.approx(losses[-1], rel=1e-6)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(tmp_path / "run" / "mlruns").resolve().as_uri())
    run_id = (tmp_path / "run" / "mlflow-run-id.txt").read_text().strip()
    got = [m.value for m in sorted(client.get_metric_history(run_id, "epoch.loss"), key=lambda m: m.step)]
    assert got == pytest.approx(losses, rel=1e-6)
    run = client.get_run(run_id)
    assert run.data.params["batch_size"] == "256" and run.data.params["method_name"] == "simsiam"
    assert run.data.metrics["final.loss"] == pytest.approx(losses[-1], rel=1e-6)


def test_a_missing_tracker_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import builtins

    from simxir.train.logging import check_backends

    real = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ModuleNotFoundError("No module named 'wandb'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda name: no_wandb(name))
    with pytest.raises(UserError, match=r"pip install 'simxir\[wandb\]'"):
        check_backends(["csv", "wandb"])
    check_backends(["csv", "tensorboard"])


def test_unknown_backends_are_refused_by_the_config(tmp_path, cli):
    r = cli(["pretrain", "--method", "simsiam", "--out", tmp_path / "r", "logging.backends=[csv,comet]"])
    assert r.code == 2 and "logging.backends" in r.error and "comet" in r.error
