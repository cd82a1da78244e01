"""``simxir pretrain``: self-supervised pretraining of a backbone with one of the built-in methods."""

from __future__ import annotations

import json

import typer

from simxir import distributed
from simxir.io import json_safe
from simxir.methods import PRETRAIN_METHODS
from simxir.protocol.monitor import knn_monitor
from simxir.train.assemble import build_config
from simxir.train.checkpoint import resume_recipe
from simxir.train.monitors import collapse_label
from simxir.train.pretrain import run_pretrain


def pretrain_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=1 "
                                          "batch_size=128 optim.lr=0.1 method.proj_dim=256"),
    method: str = typer.Option(None, "--method", help=", ".join(sorted(PRETRAIN_METHODS)) + " (default: the recipe's "
                               "method_name)"),
    data: str = typer.Option(None, "--data", help="dataset spec (digits, npz:FILE, cifar10:DIR, folder:DIR "
                             "labelled or not, files:LIST, ...); overrides the recipe's"),
    eval_data: str = typer.Option(None, "--eval-data", help="labelled dataset spec for the kNN monitor "
                                  "(default: --data's own test split; needed for unlabelled --data)"),
    out: str = typer.Option(..., "--out", help="run folder: checkpoint, logs, encoder.safetensors"),
    recipe: str = typer.Option(None, "--recipe", help="YAML recipe (recipes/pretrain/*.yaml); with "
                               "--resume and no recipe, RUN_DIR/config.yaml"),
    resume: bool = typer.Option(False, "--resume", help="continue from RUN_DIR/checkpoint.pt"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the outputs of an earlier run in RUN_DIR "
                                   "(without it, a folder holding a run is refused)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Pretrain a backbone with a self-supervised method; writes RUN_DIR/encoder.safetensors."""
    cfg = build_config(method, resume_recipe(out, resume, recipe), list(overrides or []), data, eval_data)
    # diverged/interrupted: reported by simxir.cli
    result = run_pretrain(cfg, out, resume=resume, evaluator=knn_monitor, overwrite=overwrite)
    if not distributed.is_main():
        return
    # "collapsed": the final encoder (the last epoch's monitors); "collapsed_epochs": every epoch
    # whose line said COLLAPSED, so a run that collapsed and recovered says so in both places
    collapsed_epochs = [m["epoch"] for m in result["epochs"] if m.get("collapsed")]
    summary = {"epochs": result["epochs"], "collapsed": result["collapsed"],
               "collapsed_epochs": collapsed_epochs, "encoder": result["encoder"]}
    if json_out:
        print(json.dumps(json_safe(summary)))
    else:
        last = result["epochs"][-1]
        status = collapse_label(last) if result["collapsed"] else "ok"
        if collapsed_epochs and not result["collapsed"]:
            status += f" (collapsed in epoch{'s' if len(collapsed_epochs) > 1 else ''} " \
                      f"{', '.join(map(str, collapsed_epochs))}, recovered)"
        print(f"{cfg.method_name}: {len(result['epochs'])} epochs, final loss {last['loss']:.4f}, "
              f"probe test top-1 {last.get('probe_test_top1', float('nan')):.3f}, {status}; "
              f"encoder {result['encoder']}")
