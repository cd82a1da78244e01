"""How every run is put together, whichever command starts it (pretrain, finetune, ablation, demo):
the config's layers (:func:`build_config`), the data it trains and evaluates on
(:func:`open_run_data`) and the method around a backbone (:func:`build_model`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from simxir.augment import build_augment
from simxir.config import ConfigError, apply_overrides, from_dict, load_recipe, read_recipe, to_dict
from simxir.data import open_dataset, open_eval_dataset, split_validation
from simxir.data.index import EVAL_INDEX_CACHE, INDEX_CACHE
from simxir.errors import UserError
from simxir.methods import CONFIGS, METHODS, Method, build_method
from simxir.models import build_backbone
from simxir.progress import log
from simxir.recipes import find_recipe
from simxir.train.config import TrainConfig
from simxir.train.plan import resolve_device


def build_config(method: str | None, recipe: str | Path | None, overrides: list[str],
                 data: str | None = None, eval_data: str | None = None) -> TrainConfig:
    """The resolved config: TrainConfig's defaults, the method's own ``train_defaults``, the
    recipe, then ``key=value`` overrides (``method.KEY=V`` for the method's own config, checked
    against ``simxir.methods.CONFIGS[method]``), then ``--data`` and ``--eval-data``."""
    recipe = _named_recipe(recipe, method)
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


def _named_recipe(recipe: str | Path | None, method: str | None) -> str | Path | None:
    """A recipe file, or a packaged recipe by name: a fine-tuning method's among recipes/finetune, any
    other's among recipes/pretrain (without --method: pretrain's, else finetune's)."""
    if recipe is None or Path(recipe).exists():
        return recipe
    if method in METHODS:
        return find_recipe(recipe, "finetune" if METHODS[method].fine_tunes else "pretrain")
    try:
        return find_recipe(recipe, "pretrain")
    except UserError:
        return find_recipe(recipe, "finetune")


@dataclasses.dataclass
class RunData:
    """What a run reads: the data it trains on, the labelled data it is evaluated on (the training
    data itself unless ``eval_data`` is set), the augmentation and the device."""

    dataset: Any
    evaluation: Any
    augment: Any
    device: torch.device


def open_eval_data(cfg: TrainConfig, dataset: Any, out: Path, device: torch.device | None = None) -> Any:
    """The dataset evaluation runs on: ``cfg.eval_data`` (labelled, at the training crop size) when
    set, else the training data itself."""
    if not cfg.eval_data:
        return dataset
    return open_eval_dataset(cfg.eval_data, dataset.image_size, cfg.loader, device=device,
                             index_cache=str(out / EVAL_INDEX_CACHE))


def open_run_data(cfg: TrainConfig, out: str | Path, val_fraction: float = 0.0,
                  normalization: tuple[Any, Any] | None = None) -> RunData:
    """Open ``cfg.data`` (and ``cfg.eval_data``) once, on the run's device, with the data index cached
    in the run folder ``out``; ``val_fraction`` > 0 evaluates on a stratified validation split of the
    training data instead of its test split; ``normalization``: the (mean, std) the augmentation
    normalises with (default: the data's own)."""
    out = Path(out)
    device = resolve_device(cfg)
    dataset = open_dataset(cfg.data, cfg.image_size, cfg.loader, index_cache=str(out / INDEX_CACHE),
                           device=device, on_device=cfg.data_on_device)
    if val_fraction:
        dataset = _validation_split(cfg, dataset, val_fraction)
    evaluation = open_eval_data(cfg, dataset, out, device)
    mean, std = normalization or (dataset.mean, dataset.std)
    augment = build_augment(cfg.augment, dataset.image_size, mean, std, multicrop=cfg.multicrop)
    return RunData(dataset, evaluation, augment, device)


def _validation_split(cfg: TrainConfig, dataset: Any, fraction: float) -> Any:
    if not 0 < fraction < 1:
        raise UserError(f"--val-fraction: expected a number in (0, 1), got {fraction}")
    if getattr(dataset, "streamed", False):
        raise UserError("--val-fraction: not available for streamed folders; put the validation "
                        "images in DIR/val/<class>/ instead")
    if cfg.eval_data or not dataset.labelled:
        raise UserError("--val-fraction: splits the labelled training data; with --eval-data or unlabelled "
                        "--data, evaluation runs on the --eval-data set")
    dataset = split_validation(dataset, fraction, cfg.seed)
    log(f"evaluating on a validation split of {fraction:.0%} of the training data "
        f"({len(dataset.test.labels)} images); the test split is not used")
    return dataset


def build_model(cfg: TrainConfig, backbone: nn.Module | None = None) -> Method:
    """``cfg.method_name`` around ``backbone`` (default: a new ``cfg.backbone``), built after seeding
    torch with ``cfg.seed`` so that the same config gives the same initial weights."""
    torch.manual_seed(cfg.seed)
    if backbone is None:
        if cfg.zero_init_residual and not cfg.backbone.startswith("resnet"):
            raise UserError(f"zero_init_residual: applies to ResNet backbones, not {cfg.backbone}")
        extra = {"zero_init_residual": True} if cfg.zero_init_residual else {}
        backbone = build_backbone(cfg.backbone, **extra, **cfg.vit.options())
    return build_method(cfg.method_name, backbone, dict(cfg.method))
