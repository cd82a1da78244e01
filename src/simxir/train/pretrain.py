"""A pretraining run from a config: the config's layers (:func:`build_config`) and the objects it
names, built and trained (:func:`run_pretrain`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from simxir.augment import build_augment
from simxir.config import (
    ConfigError,
    apply_overrides,
    from_dict,
    load_recipe,
    read_recipe,
    to_dict,
)
from simxir.data import open_dataset, open_eval_dataset
from simxir.data.index import EVAL_INDEX_CACHE, INDEX_CACHE
from simxir.errors import UserError
from simxir.methods import CONFIGS, METHODS, build_method
from simxir.models import build_backbone
from simxir.progress import log
from simxir.rundir import own_run_folder
from simxir.train.config import TrainConfig
from simxir.train.engine import EpochCallback, Evaluator, train
from simxir.train.plan import resolve_device, resolve_length


def build_config(method: str | None, recipe: str | Path | None, overrides: list[str],
                 data: str | None = None, eval_data: str | None = None) -> TrainConfig:
    """The resolved config: TrainConfig's defaults, the method's own ``train_defaults``, the
    recipe, then ``key=value`` overrides (``method.KEY=V`` for the method's own config, checked
    against ``simxir.methods.CONFIGS[method]``), then ``--data`` and ``--eval-data``."""
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
    if eval_data:
        updates["eval_data"] = eval_data
    return dataclasses.replace(cfg, **updates)


def open_eval_data(cfg: TrainConfig, dataset: Any, out: Path, device: torch.device | None = None) -> Any:
    """The dataset evaluation runs on: ``cfg.eval_data`` (labelled, at the training crop size) when
    set, else the training data itself."""
    if not cfg.eval_data:
        return dataset
    return open_eval_dataset(cfg.eval_data, dataset.image_size, cfg.loader, device=device,
                             index_cache=str(out / EVAL_INDEX_CACHE))


def run_pretrain(cfg: TrainConfig, out: str | Path, resume: bool = False,
                 callbacks: tuple[EpochCallback, ...] = (),
                 evaluator: Callable[[TrainConfig, Any, Any], Evaluator | None] | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Load data, build backbone + augment + method from ``cfg`` (seeded), and train in the run
    folder ``out``, which the run owns while it lives (:func:`simxir.rundir.own_run_folder`;
    ``overwrite`` replaces an earlier run's outputs there).

    ``evaluator``: ``fn(cfg, dataset, augment)`` giving the engine's epoch evaluator (or None), e.g.
    :func:`simxir.protocol.monitor.knn_monitor`."""
    with own_run_folder(out, resume=resume, overwrite=overwrite):
        return _run_pretrain(cfg, out, resume, callbacks, evaluator)


def _run_pretrain(cfg: TrainConfig, out: str | Path, resume: bool, callbacks: tuple[EpochCallback, ...],
                  evaluator: Callable[[TrainConfig, Any, Any], Evaluator | None] | None) -> dict[str, Any]:
    device = resolve_device(cfg)
    dataset = open_dataset(cfg.data, cfg.image_size, cfg.loader, index_cache=str(Path(out) / INDEX_CACHE),
                           device=device, on_device=cfg.data_on_device)
    evaluation = open_eval_data(cfg, dataset, Path(out), device)
    augment = build_augment(cfg.augment, dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(cfg.seed)
    backbone = build_backbone(cfg.backbone, **cfg.vit.options())
    method = build_method(cfg.method_name, backbone, dict(cfg.method))
    if cfg.eval_data and cfg.monitor.knn_every == 0:   # asked for evaluation: at least after the last epoch
        cfg = resolve_length(cfg, len(dataset.train))
        cfg = dataclasses.replace(cfg, monitor=dataclasses.replace(cfg.monitor, knn_every=cfg.epochs))
    if not dataset.labelled and not cfg.eval_data:
        log(f"data {cfg.data}: unlabelled, so no online probe and no kNN monitor (--eval-data SPEC "
            f"evaluates on a labelled dataset)")
    ev = evaluator(cfg, evaluation, augment) if evaluator is not None else None
    return train(cfg, method, dataset, augment, out, resume=resume, callbacks=callbacks, evaluator=ev,
                 device=device)
