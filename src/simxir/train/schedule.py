"""Per-step learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

from __future__ import annotations

import math

import torch

from simxir.errors import UserError
from simxir.schedules import cosine_value
from simxir.train.config import ScheduleConfig, TrainConfig

AUTO_MIN_EPOCHS = 10
AUTO_MIN_STEPS = 150


def auto_epochs(steps_per_epoch: int) -> int:
    """The default run length: 10 epochs, or more on small data so that the run makes at least
    150 optimizer steps (digits at batch 256: 5 steps an epoch, 30 epochs). Ten epochs of digits
    (50 steps) left BYOL and bridge below their random-init encoder."""
    return max(AUTO_MIN_EPOCHS, math.ceil(AUTO_MIN_STEPS / max(1, steps_per_epoch)))


def lr_factor(step: int, total_steps: int, warmup_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based) of ``total_steps``.

    Warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``. Then cosine:
    ``r + (1 - r) * (1 + cos(pi * t)) / 2`` with ``t = (step - warmup_steps) / (total_steps - warmup_steps)``
    and ``r = final_lr_ratio``; ``constant`` keeps 1.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if cfg.name == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    t = min(1.0, (step - warmup_steps) / span)
    r = cfg.final_lr_ratio
    return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * t))


def apply_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor``; returns the first group's lr."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]


def check_value_schedules(cfg: TrainConfig, method_cfg: object) -> None:
    """``schedule.method`` names numeric fields of the method's config, each with [start, end]."""
    for key, pair in cfg.schedule.method.items():
        if not hasattr(method_cfg, key) or isinstance(getattr(method_cfg, key), bool) or \
                not isinstance(getattr(method_cfg, key), int | float):
            raise UserError(f"schedule.method.{key}: {cfg.method_name or 'the method'}'s config has no numeric "
                            f"field {key!r}")
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)):
            raise UserError(f"schedule.method.{key}: expected [start, end], got {pair!r}")
    if cfg.optim.weight_decay_end is not None and cfg.optim.weight_decay_end < 0:
        raise UserError(f"optim.weight_decay_end: expected >= 0, got {cfg.optim.weight_decay_end}")
    if cfg.optim.clip_grad < 0:
        raise UserError(f"optim.clip_grad: expected >= 0 (0: off), got {cfg.optim.clip_grad}")


def apply_value_schedules(cfg: TrainConfig, optimizer: torch.optim.Optimizer, method_cfg: object, step: int,
                          total_steps: int) -> None:
    """Set this step's weight decay (the decayed group; cosine to ``optim.weight_decay_end``) and
    the scheduled method values."""
    if cfg.optim.weight_decay_end is not None:
        wd = cosine_value(step, total_steps, cfg.optim.weight_decay, cfg.optim.weight_decay_end)
        for g in optimizer.param_groups:
            if g.get("name") == "decay":
                g["weight_decay"] = wd
    for key, (start, end) in cfg.schedule.method.items():
        setattr(method_cfg, key, cosine_value(step, total_steps, float(start), float(end)))
