"""Theorem 3.1 simulation: fitted decay rates, the identity's derivative, and sensitivity to its assumptions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simxir.analysis.theorem import TheoremConfig, envelope_deviation, fit_rate, run_theorem, simulate
from simxir.errors import UserError

SMALL = dict(feature_dim=4, input_dim=16, samples=6, lr=0.01, e_folds=2.0, points=40)


def test_fit_rate_and_envelope_on_known_curves():
    t = np.linspace(0, 5, 50)
    assert fit_rate(t, 3.0 * np.exp(-0.7 * t)) == pytest.approx(0.7, rel=1e-12)
    assert envelope_deviation(t, 2.0 * np.exp(-2 * 0.25 * t), 0.25) == pytest.approx(0.0, abs=1e-12)
    # a constant gap leaves the envelope by 1 - e^{-2 eta T}
    assert envelope_deviation(t, np.ones_like(t), 0.1) == pytest.approx(1 - math.exp(-1.0))


def test_identity_derivative_under_lemma_dynamics():
    """d/dt (W_p^T W_p - F F^T) = -2 eta (W_p^T W_p - F F^T) when dF/dt = -dL/dF - eta F (autograd)."""
    g = torch.Generator().manual_seed(0)
    d, n, eta = 5, 7, 0.3
    wp = torch.randn(d, d, generator=g, dtype=torch.float64, requires_grad=True)
    f1 = torch.randn(d, n, generator=g, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(d, n, generator=g, dtype=torch.float64)
    loss = 0.5 * ((wp @ f1 - f2.detach()) ** 2).sum()
    gwp, gf1 = torch.autograd.grad(loss, (wp, f1))
    with torch.no_grad():
        dwp, df1 = -gwp - eta * wp, -gf1 - eta * f1
        deriv = dwp.T @ wp + wp.T @ dwp - df1 @ f1.T - f1 @ df1.T
        gap = wp.T @ wp - f1 @ f1.T
    torch.testing.assert_close(deriv, -2 * eta * gap)


@pytest.mark.parametrize("eta", [0.1, 0.2, 0.4])
def test_exact_variant_rate_within_10_percent(eta):
    res = run_theorem(TheoremConfig(etas=(eta,), variants=("exact",), **SMALL), keep_curves=False)
    (run,) = res["runs"]
    assert run["predicted_rate"] == pytest.approx(2 * eta)
    assert abs(run["fitted_rate"] - 2 * eta) <= 0.10 * 2 * eta
    assert run["gap_end"] / run["gap_start"] == pytest.approx(math.exp(-2.0), rel=0.05)
    assert res["exact_within_10pct"] is True


def test_gap_closes_while_weights_stay_alive():
    # small weight decay: W_p^T W_p keeps most of its size while the gap falls to e^-2 (alignment,
    # not the trivial decay of all weights that a large eta gives)
    cfg = TheoremConfig(etas=(0.05,), variants=("exact",),
                        **{**SMALL, "feature_dim": 8, "input_dim": 32, "samples": 16})
    (run,) = run_theorem(cfg, keep_curves=False)["runs"]
    assert run["rel_error"] < 0.10
    assert run["wp_gram_end"] / run["wp_gram_start"] > 3 * run["gap_end"] / run["gap_start"]


def test_three_etas_in_one_run_and_joint_variant():
    res = run_theorem(TheoremConfig(etas=(0.1, 0.2, 0.4), variants=("exact", "symmetrized-joint"), **SMALL),
                      keep_curves=True)
    assert res["exact_within_10pct"] and len(res["exact_etas"]) == 3
    for r in res["runs"]:
        assert r["rel_error"] < 0.10, r
        assert len(r["curves"]["t"]) == 40


def test_gradient_descent_error_shrinks_with_step():
    cfg = dict(SMALL)
    devs = []
    for lr in (0.02, 0.005):
        cfg["lr"] = lr
        sim = simulate(0.2, "exact", TheoremConfig(**cfg))
        devs.append(envelope_deviation(sim["t"], sim["gap"], 0.2))
    assert devs[1] < 0.5 * devs[0]  # first-order method: deviation ~ lr


def test_relaxed_assumptions_drift():
    res = run_theorem(TheoremConfig(etas=(0.2,), variants=("exact", "ordinary"), **SMALL), keep_curves=False)
    exact, ordinary = res["runs"]
    assert ordinary["envelope_deviation"] > 10 * exact["envelope_deviation"]


def test_bad_config():
    with pytest.raises(UserError, match="eta"):
        run_theorem(TheoremConfig(etas=(0.0,)))
    with pytest.raises(UserError, match="variant"):
        run_theorem(TheoremConfig(variants=("nope",)))
