"""A self-contained simulation of Theorem 3.1 of the bridging paper (Liu, Suganuma, Okatani 2022).

Setting (all matrices, no nonlinearity): inputs ``X1, X2`` are ``D x n`` (one sample per column),
a linear encoder ``F = W X`` (``W``: ``d x D``), a linear predictor ``W_p`` (``d x d``), the loss
``L = 0.5 ||W_p F1 - StopGrad(F2)||_F^2`` and weight decay ``eta`` on ``W`` and ``W_p``, trained by
gradient descent with a small step ``lr`` (time ``t = step * lr`` approximates gradient flow).

Theorem 3.1: if ``F1`` moves as in Lemma 3.3, ``dF1/dt = -dL/dF1 - eta F1``, then
``d/dt (W_p^T W_p - F1 F1^T) = -2 eta (W_p^T W_p - F1 F1^T)``, so
``||W_p^T W_p - F1 F1^T||_F = ||.||_F(0) * exp(-2 eta t)`` whatever the loss does.
(Proof: ``dL/dW_p = E F1^T`` and ``dL/dF1 = W_p^T E`` with ``E = W_p F1 - F2``; the cross terms of
the two derivatives are the same matrices and cancel.)

For the linear encoder ``dF1/dt = dW/dt X1 = -(dL/dF1) X1^T X1 - eta F1``, which is Lemma 3.3
exactly when ``X1^T X1 = I`` (orthonormal input columns, ``n <= D``). Variants:

* ``exact``: one-sided loss, ``X1`` orthonormal columns, ``X2 = X1 + noise`` (the "augmentation";
  only ``X1`` needs to be orthonormal). The identity holds up to the O(lr) error of gradient descent.
* ``ordinary``: the same with Gaussian ``X1`` (entries N(0, 1/D), so ``E[X1^T X1] = I`` but not
  ``X1^T X1 = I``): the identity is only approximate; we report how far it drifts.
* ``symmetrized``: ``L = 0.5||W_p F1 - sg F2||^2 + 0.5||W_p F2 - sg F1||^2`` with the ``exact``
  inputs: ``F1 F1^T`` is the wrong partner now (``W_p`` also learns from ``F2``); we report the
  drift of ``||W_p^T W_p - F1 F1^T||`` and of ``||W_p^T W_p - F1 F1^T - F2 F2^T||``.
* ``symmetrized-joint``: the symmetrized loss with ``[X1 X2]`` jointly orthonormal: then
  ``W_p^T W_p - (F1 F1^T + F2 F2^T)`` decays exactly at ``2 eta`` (the same proof on ``[F1 F2]``).

The rate is fitted by least squares of ``log ||gap(t)||`` on ``t`` over ``[0, T]`` with
``2 eta T = e_folds`` (default 3: the gap falls to ~5%).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simxir.analysis.plots import plot_theorem
from simxir.errors import UserError
from simxir.io import atomic_write_json

VARIANTS = ("exact", "ordinary", "symmetrized", "symmetrized-joint")


@dataclass
class TheoremConfig:
    etas: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    variants: tuple[str, ...] = VARIANTS
    feature_dim: int = 8         # d
    input_dim: int = 64          # D (>= 2 n for the jointly orthonormal variant)
    samples: int = 16            # n
    lr: float = 0.005            # gradient-descent step; t = step * lr
    e_folds: float = 3.0         # simulate until 2 * eta * t = e_folds
    view_noise: float = 0.3      # X2 = X1 + view_noise * N(0, 1/D)
    seed: int = 0
    points: int = 300            # recorded points per run

    def check(self) -> None:
        if not self.etas or any(not (e > 0) for e in self.etas):
            raise UserError(f"--eta: expected positive weight-decay values, got {list(self.etas)}")
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise UserError(f"--variant: expected some of {', '.join(VARIANTS)}, got {bad or 'none'}")
        if min(self.feature_dim, self.samples) < 1 or self.input_dim < 2 * self.samples:
            raise UserError("theorem sim: need feature_dim, samples >= 1 and input_dim >= 2 * samples")
        if not (0 < self.lr <= 0.1) or self.e_folds <= 0 or self.points < 3:
            raise UserError("theorem sim: need 0 < lr <= 0.1, e_folds > 0 and points >= 3")


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))  # columns are orthonormal: Q^T Q = I


def _inputs(variant: str, cfg: TheoremConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    big_d, n = cfg.input_dim, cfg.samples
    if variant == "symmetrized-joint":
        q = _orthonormal_columns(rng, big_d, 2 * n)
        return q[:, :n], q[:, n:]
    if variant == "ordinary":
        x1 = rng.standard_normal((big_d, n)) / math.sqrt(big_d)
    else:
        x1 = _orthonormal_columns(rng, big_d, n)
    x2 = x1 + cfg.view_noise * rng.standard_normal((big_d, n)) / math.sqrt(big_d)
    return x1, x2


def simulate(eta: float, variant: str, cfg: TheoremConfig) -> dict[str, np.ndarray]:
    """One gradient-descent run; returns arrays ``t``, ``gap``, ``gap_joint``, ``loss``, ``wp_gram``.

    ``gap = ||W_p^T W_p - F1 F1^T||_F``, ``gap_joint = ||W_p^T W_p - F1 F1^T - F2 F2^T||_F``,
    ``wp_gram = ||W_p^T W_p||_F`` (to see whether the weights stay alive or just decay).
    """
    if variant not in VARIANTS:
        raise UserError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}")
    rng = np.random.default_rng(cfg.seed)  # same initial weights for every eta and variant
    d, big_d, n = cfg.feature_dim, cfg.input_dim, cfg.samples
    w = rng.standard_normal((d, big_d)) / math.sqrt(n)     # F1 entries ~ N(0, 1/n): F1 F1^T ~ I
    wp = rng.standard_normal((d, d)) / math.sqrt(d) + 0.5 * np.eye(d)
    x1, x2 = _inputs(variant, cfg, np.random.default_rng(cfg.seed + 1))
    symmetric = variant.startswith("symmetrized")
    t_end = cfg.e_folds / (2 * eta)
    steps = max(1, math.ceil(t_end / cfg.lr))
    record = set(np.linspace(0, steps, cfg.points).round().astype(int).tolist())
    out: dict[str, list[float]] = {k: [] for k in ("t", "gap", "gap_joint", "loss", "wp_gram")}
    for k in range(steps + 1):
        f1, f2 = w @ x1, w @ x2
        e1 = wp @ f1 - f2
        if k in record:
            g = wp.T @ wp
            out["t"].append(k * cfg.lr)
            out["gap"].append(float(np.linalg.norm(g - f1 @ f1.T)))
            out["gap_joint"].append(float(np.linalg.norm(g - f1 @ f1.T - f2 @ f2.T)))
            loss = 0.5 * float((e1 * e1).sum())
            if symmetric:
                e2 = wp @ f2 - f1
                loss += 0.5 * float((e2 * e2).sum())
            out["loss"].append(loss)
            out["wp_gram"].append(float(np.linalg.norm(g)))
        if k == steps:
            break
        grad_wp = e1 @ f1.T
        grad_w = (wp.T @ e1) @ x1.T          # only the online branch F1 carries gradient
        if symmetric:
            e2 = wp @ f2 - f1
            grad_wp = grad_wp + e2 @ f2.T
            grad_w = grad_w + (wp.T @ e2) @ x2.T
        wp = wp - cfg.lr * (grad_wp + eta * wp)
        w = w - cfg.lr * (grad_w + eta * w)
        if not (np.isfinite(wp).all() and np.isfinite(w).all()):
            raise UserError(f"theorem sim diverged (eta={eta}, lr={cfg.lr}); use a smaller --lr")
    return {k: np.asarray(v) for k, v in out.items()}


def fit_rate(t: np.ndarray, gap: np.ndarray) -> float:
    """Decay rate ``r`` of the least-squares fit ``log gap = a - r t`` (points with gap > 0)."""
    keep = gap > 0
    if keep.sum() < 2:
        return math.nan
    slope = np.polyfit(t[keep], np.log(gap[keep]), 1)[0]
    return float(-slope)


def envelope_deviation(t: np.ndarray, gap: np.ndarray, eta: float) -> float:
    """``max_t |gap(t) - gap(0) e^{-2 eta t}| / gap(0)``: how far the run leaves the predicted curve."""
    if gap[0] == 0:
        return math.nan
    return float(np.max(np.abs(gap - gap[0] * np.exp(-2 * eta * t))) / gap[0])


def _summary(eta: float, sim: dict[str, np.ndarray], key: str) -> dict[str, Any]:
    rate = fit_rate(sim["t"], sim[key])
    return {
        "fitted_rate": rate,
        "predicted_rate": 2 * eta,
        "rel_error": abs(rate - 2 * eta) / (2 * eta),
        "envelope_deviation": envelope_deviation(sim["t"], sim[key], eta),
        "gap_start": float(sim[key][0]),
        "gap_end": float(sim[key][-1]),
    }


def run_theorem(cfg: TheoremConfig | None = None, keep_curves: bool = True) -> dict[str, Any]:
    """Run every (eta, variant) and summarise; the JSON object of ``simxir theorem31 --json``.

    ``runs`` holds one entry per (eta, variant) with the fitted rate of the tracked gap
    (``F1 F1^T`` for one-sided losses, ``F1 F1^T + F2 F2^T`` for ``symmetrized-joint``) vs ``2 eta``;
    ``exact_within_10pct`` is true when every ``exact`` run's fitted rate is within 10% of ``2 eta``.
    """
    cfg = cfg or TheoremConfig()
    cfg.check()
    runs = []
    for variant in cfg.variants:
        for eta in cfg.etas:
            sim = simulate(eta, variant, cfg)
            key = "gap_joint" if variant == "symmetrized-joint" else "gap"
            entry: dict[str, Any] = {"eta": eta, "variant": variant, "tracked": key, **_summary(eta, sim, key)}
            if variant == "symmetrized":
                entry["joint"] = _summary(eta, sim, "gap_joint")
            entry["loss_start"], entry["loss_end"] = float(sim["loss"][0]), float(sim["loss"][-1])
            entry["wp_gram_start"], entry["wp_gram_end"] = float(sim["wp_gram"][0]), float(sim["wp_gram"][-1])
            if keep_curves:
                entry["curves"] = {k: v.tolist() for k, v in sim.items()}
            runs.append(entry)
    exact = [r for r in runs if r["variant"] == "exact"]
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()},
        "assumptions": [
            "linear encoder F = W X and linear predictor W_p, no nonlinearity, no normalisation",
            "loss 0.5||W_p F1 - sg(F2)||_F^2 (symmetrized variants add the swapped term)",
            "weight decay eta on W and W_p; plain gradient descent with step lr, t = step * lr",
            "exact variant: X1 has orthonormal columns, so dF1/dt = -dL/dF1 - eta F1 (Lemma 3.3)",
        ],
        "runs": runs,
        "exact_within_10pct": bool(exact) and all(r["rel_error"] <= 0.10 for r in exact),
        "exact_etas": [r["eta"] for r in exact],
    }


def write_theorem(result: dict[str, Any], out: Path) -> None:
    """``out/theorem31.png`` (the figure) and ``out/theorem31.json`` (the result, with its path)."""
    result["plot"] = str(plot_theorem(result, out / "theorem31.png"))
    atomic_write_json(result, out / "theorem31.json")
