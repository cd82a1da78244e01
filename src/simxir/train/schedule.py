"""Per-step learning-rate schedule: linear warm-up, then cosine decay (or constant)."""

from __future__ import annotations

import math

import torch

from simxir.train.config import ScheduleConfig

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
