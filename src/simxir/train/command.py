"""``simxir pretrain``: self-supervised pretraining of a backbone with one of the built-in methods."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import typer

from simxir.config import ConfigError, apply_overrides, from_dict, load_recipe, read_recipe, to_dict
from simxir.errors import UserError
from simxir.io import json_safe
from simxir.train.config import TrainConfig
from simxir.train.checkpoint import require_checkpoint
from simxir.train.engine import EpochCallback, train
from simxir.train.monitors import collapse_label



def build_config(method: str | None, recipe: str | Path | None, overrides: list[str],
                 data: str | None = None) -> TrainConfig:
    """The resolved config: TrainConfig's defaults, the method's own ``train_defaults``, the
    recipe, then ``key=value`` overrides (``method.KEY=V`` for the method's own config, checked
    against ``simxir.methods.CONFIGS[method]``), then ``--data``."""
    from simxir.methods import CONFIGS, METHODS

    method_ovr = [o for o in overrides if o.strip().startswith("method.")]
    train_ovr = [o for o in overrides if not o.strip().startswith("method.")]
    recipe_name = read_recipe(recipe, "TrainConfig").get("method_name") if recipe else None
    if method and recipe_name and method != recipe_name:
        raise UserError(f"--method {method}: the recipe {recipe} is written for {recipe_name!r}")
    name = method or recipe_name
    if not name:
        raise UserError("--method: required (one of " + ", ".join(sorted(CONFIGS)) + ")")
    if not isinstance(name, str) or name not in CONFIGS:
        raise UserError(f"--method {name}: expected one of {', '.join(sorted(CONFIGS))}")
    cfg = load_recipe(TrainConfig, recipe, train_ovr, base=METHODS[name].train_defaults)
    if not isinstance(cfg.method, dict):
        raise UserError(f"recipe {recipe}: 'method' must be a mapping of {name} config fields")
    # a one-field wrapper makes errors name the keys as the user wrote them: method.KEY
    wrapper = dataclasses.make_dataclass("MethodSection", [("method", CONFIGS[name])])
    try:
        mcfg = from_dict(wrapper, {"method": dict(cfg.method)})
        mcfg = apply_overrides(mcfg, method_ovr).method
    except ConfigError as exc:
        where = f"recipe {recipe}: " if recipe and not method_ovr else ""
        raise ConfigError(f"{where}{exc} (method {name})") from None
    updates: dict[str, Any] = {"method_name": name, "method": to_dict(mcfg)}
    if data:
        updates["data"] = data
    return dataclasses.replace(cfg, **updates)


def run_pretrain(cfg: TrainConfig, out: str | Path, resume: bool = False,
                 callbacks: tuple[EpochCallback, ...] = ()) -> dict[str, Any]:
    """Load data, build backbone + augment + method from ``cfg`` (seeded), and train."""
    from simxir.augment import build_augment
    from simxir.data import load_dataset
    from simxir.methods import build_method
    from simxir.models import build_backbone

    dataset = load_dataset(cfg.data)
    augment = build_augment(cfg.augment, dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone)
    method = build_method(cfg.method_name, backbone, dict(cfg.method))
    return train(cfg, method, dataset, augment, out, resume=resume, callbacks=callbacks)


def pretrain_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=1 "
                                          "batch_size=128 optim.lr=0.1 method.proj_dim=256"),
    method: str = typer.Option(None, "--method", help="byol, simsiam, barlow_twins, vicreg, moco, "
                               "simclr or bridge (default: the recipe's method_name)"),
    data: str = typer.Option(None, "--data", help="dataset spec (digits, npz:FILE, cifar10:DIR, ...); "
                             "overrides the recipe's"),
    out: str = typer.Option(..., "--out", help="run folder: checkpoint, logs, encoder.safetensors"),
    recipe: str = typer.Option(None, "--recipe", help="YAML recipe (recipes/pretrain/*.yaml); with "
                               "--resume and no recipe, RUN_DIR/config.yaml"),
    resume: bool = typer.Option(False, "--resume", help="continue from RUN_DIR/checkpoint.pt"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Pretrain a backbone with a self-supervised method; writes RUN_DIR/encoder.safetensors."""
    overrides = list(overrides or [])
    if resume:
        require_checkpoint(Path(out))
    if resume and recipe is None and (Path(out) / "config.yaml").is_file():
        recipe = str(Path(out) / "config.yaml")
    cfg = build_config(method, recipe, overrides, data)
    result = run_pretrain(cfg, out, resume=resume)   # diverged/interrupted: reported by simxir.cli
    from simxir import distributed

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
