"""Neighbour-averaging dynamics: ``f_t = P f_{t-1}`` (eq. 2.4) or its spherical form (eq. 4.2).

Spherical: ``f_t(x) = m(x) / ||m(x)||`` with ``m(x) = E_{x' in N(x)} f_{t-1}(x')``; the initial
reps are l2-normalised first. A zero mean (antipodal neighbours) is left at zero.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from simxir.dynamics.neighbourhoods import NeighbourOperator
from simxir.errors import UserError
from simxir.progress import progress


def normalize(f: torch.Tensor) -> torch.Tensor:
    """Rows divided by their l2 norm (zero rows stay zero)."""
    norm = f.norm(dim=1, keepdim=True)
    return f / torch.where(norm > 0, norm, torch.ones_like(norm))


def step(op: NeighbourOperator, f: torch.Tensor, spherical: bool = False) -> torch.Tensor:
    """One step of the dynamics on reps ``f`` (n, d)."""
    g = op.apply(f)
    return normalize(g) if spherical else g


def literal_step(inputs: np.ndarray, reps: np.ndarray, eps: float, spherical: bool = False) -> np.ndarray:
    """The paper's pseudocode, literally: a loop over points, a full distance pass per point.

    Reference for tests and the benchmark baseline; O(n^2 d) per step.
    """
    new = np.empty_like(reps)
    for i in range(inputs.shape[0]):
        nb = np.linalg.norm(inputs - inputs[i], axis=1) < eps
        new[i] = reps[nb].mean(0)
        if spherical:
            new[i] /= np.linalg.norm(new[i])
    return new


@dataclass
class DynamicsResult:
    """Final reps, the recorded steps, and per-step metrics stacked along axis 0."""

    reps: torch.Tensor
    steps: list[int]
    history: dict[str, np.ndarray] = field(default_factory=dict)
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)


def run(op: NeighbourOperator, reps: torch.Tensor, steps: int, spherical: bool = False,
        every: int = 1, metrics: Callable[[torch.Tensor], dict[str, Any]] | None = None,
        snapshot_steps: Sequence[int] = (), show_progress: bool = True) -> DynamicsResult:
    """Iterate ``steps`` times; call ``metrics(f)`` at step 0, every ``every`` steps and at the end.

    ``snapshot_steps``: steps at which a host copy of the reps is kept (for figures).
    """
    if steps < 0:
        raise UserError(f"steps: expected >= 0, got {steps}")
    if every < 1:
        raise UserError(f"every: expected >= 1, got {every}")
    f = normalize(reps) if spherical else reps
    recorded: list[int] = []
    rows: list[dict[str, Any]] = []
    snaps: dict[int, np.ndarray] = {}
    wanted = set(int(s) for s in snapshot_steps)

    def record(t: int) -> None:
        if metrics is not None:
            recorded.append(t)
            rows.append(metrics(f))
        if t in wanted:
            snaps[t] = f.detach().cpu().numpy().copy()

    record(0)
    for t in progress(range(1, steps + 1), desc="dynamics", total=steps, disable=None if show_progress else True):
        f = step(op, f, spherical)
        if t % every == 0 or t == steps:
            record(t)
        elif t in wanted:
            snaps[t] = f.detach().cpu().numpy().copy()
    history: dict[str, np.ndarray] = {}
    if rows:
        for key in rows[0]:
            history[key] = np.stack([np.asarray(r[key]) for r in rows])
    return DynamicsResult(reps=f, steps=recorded, history=history, snapshots=snaps)
