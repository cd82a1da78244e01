"""Per-step value schedules shared by the engine (weight decay, any method value) and the methods."""

from __future__ import annotations

import math

from simxir.errors import UserError


def cosine_value(step: int, total: int, start: float, end: float) -> float:
    """DINO's per-step cosine schedule (its ``utils.cosine_scheduler`` without warm-up) from ``start``
    towards ``end`` over ``total`` steps: ``end + (start - end) (1 + cos(pi step / total)) / 2``
    (DINO: the teacher momentum 0.996 -> 1, the weight decay 0.04 -> 0.4)."""
    if total < 1:
        raise UserError(f"cosine schedule: expected at least one step, got {total}")
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * step / total))
