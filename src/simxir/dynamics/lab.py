"""The dynamics lab's general run: neighbour averaging of any point set's reps, with the
neighbourhoods of its inputs (``simxir dynamics run``)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simxir.dynamics.groups import check_labels, components, is_closed
from simxir.dynamics.metrics import GroupMetrics
from simxir.dynamics.neighbourhoods import knn_operator, radius_operator
from simxir.dynamics.steps import run
from simxir.errors import UserError
from simxir.io import atomic_write_bytes, read_npz
from simxir.progress import log


def load_points(path: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read ``inputs`` (n, d1), optional ``reps`` (n, d2) and ``groups`` (n,) from an .npz."""
    p = Path(path)
    arrays = read_npz(p, ("inputs",), optional=("reps", "groups"), option="--input")
    inputs, reps, groups = arrays["inputs"], arrays.get("reps"), arrays.get("groups")
    if inputs.ndim != 2 or inputs.dtype.kind not in "fiu" or inputs.shape[0] == 0:
        raise UserError(f"--input {p}: 'inputs' must be a non-empty 2-D numeric array (n, d), got shape "
                        f"{inputs.shape} dtype {inputs.dtype}")
    n = inputs.shape[0]
    if reps is not None and (reps.ndim != 2 or reps.shape[0] != n or reps.dtype.kind not in "fiu"):
        raise UserError(f"--input {p}: 'reps' must be a numeric array of shape ({n}, d2), got {reps.shape}")
    if reps is not None and not np.isfinite(reps).all():
        raise UserError(f"--input {p}: 'reps' contains NaN or inf")
    if groups is not None and (groups.shape != (n,) or groups.dtype.kind not in "iu"):
        raise UserError(f"--input {p}: 'groups' must be integer labels of shape ({n},), got {groups.shape} "
                        f"{groups.dtype}")
    return inputs, reps, groups


def run_points(inputs: np.ndarray, reps: np.ndarray | None, groups: np.ndarray | None, *,
               eps: float | None, knn: int | None, closed: bool = False, weights: str = "uniform",
               sigma: float | None = None, index: str = "auto", steps: int = 100, spherical: bool = False,
               every: int = 1, dim: int = 2, seed: int = 0, device: torch.device | None = None,
               float32: bool = False, out: str | None = None) -> dict[str, Any]:
    """Neighbourhoods from ``inputs`` (radius ``eps`` or ``knn`` rule), ``steps`` averaging steps of
    ``reps`` (random ``dim``-dimensional when None), group metrics per recorded step (``groups``, or
    the graph's components); optionally ``out`` (.npz of final reps and metric arrays)."""
    t0 = time.perf_counter()
    if eps is not None:
        op = radius_operator(inputs, eps, closed=closed, weights=weights, sigma=sigma)  # type: ignore[arg-type]
    else:
        op = knn_operator(inputs, int(knn), weights=weights, sigma=sigma, index=index)  # type: ignore[arg-type]
    t_graph = time.perf_counter() - t0
    comp = components(op)
    labels = check_labels(groups, op.n, "--input groups") if groups is not None else comp
    if reps is None:
        reps = np.random.default_rng(seed).standard_normal((op.n, dim))
    f0 = torch.from_numpy(np.ascontiguousarray(reps, dtype=np.float32 if float32 else np.float64))
    f0 = f0.to(device or "cpu")
    gm = GroupMetrics(labels)
    t1 = time.perf_counter()
    res = run(op, f0, steps, spherical=spherical, every=every, metrics=gm)
    t_run = time.perf_counter() - t1
    log(f"{op.rule}: {op.n} points, {op.degrees().mean():.1f} neighbours/point, "
        f"{int(labels.max()) + 1} groups, {steps} steps in {t_run:.2f}s")
    if out:
        buf = io.BytesIO()
        np.savez(buf, reps=res.reps.cpu().numpy(), steps=np.asarray(res.steps), groups=labels,
                 pairs=gm.pairs, **res.history)
        atomic_write_bytes(out, buf.getvalue())
    return {
        "n": op.n, "rule": op.rule, "mean_neighbours": float(op.degrees().mean()),
        "num_components": int(comp.max() + 1), "num_groups": int(labels.max() + 1),
        "groups_closed": is_closed(op, labels), "spherical": spherical, "reps_dim": int(f0.shape[1]),
        "steps": res.steps, "pairs": gm.pairs.tolist(),
        "metrics": {k: v.tolist() for k, v in res.history.items()},
        "seconds": {"graph": round(t_graph, 4), "dynamics_and_metrics": round(t_run, 4)},
        "out": out,
    }
