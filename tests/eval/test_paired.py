"""Paired before/after statistics against independently written formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simxir.errors import UserError
from simxir.eval.paired import paired_change, verdict


def _mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar: 2 * P(X <= min(b, c)), X ~ Binomial(b + c, 1/2), capped at 1."""
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def test_counts_change_and_mcnemar_match_the_formulas():
    rng = np.random.default_rng(1)
    before = rng.random(400) < 0.8
    after = before.copy()
    flip_up = np.flatnonzero(~before)[:15]
    flip_down = np.flatnonzero(before)[:4]
    after[flip_up], after[flip_down] = True, False
    c = paired_change(before, after, n_boot=4000, seed=3)
    assert (c["only_after"], c["only_before"], c["n"]) == (15, 4, 400)
    assert c["change"] == pytest.approx(100 * 11 / 400)
    assert c["after"] - c["before"] == pytest.approx(c["change"])
    assert c["mcnemar_p"] == pytest.approx(_mcnemar_exact(15, 4), rel=1e-9)
    # the bootstrap interval of a mean of n iid +-1/0 values ~ change +- 1.96 sd / sqrt(n)
    d = after.astype(float) - before.astype(float)
    half = 1.96 * 100 * d.std() / math.sqrt(len(d))
    assert c["ci_low"] == pytest.approx(c["change"] - half, abs=0.35)
    assert c["ci_high"] == pytest.approx(c["change"] + half, abs=0.35)
    assert verdict(c).startswith("a gain")


def test_no_change_and_noise_are_said_plainly():
    same = np.array([True, False, True, True])
    c = paired_change(same, same)
    assert c["change"] == 0 and c["ci_low"] == 0 == c["ci_high"] and c["mcnemar_p"] == 1.0
    assert verdict(c).startswith("within noise")
    before = np.array([True] * 50 + [False] * 50)
    after = before.copy()
    after[[0, 60]] = [False, True]                       # one broken, one fixed
    assert verdict(paired_change(before, after)).startswith("within noise")


def test_bad_input_is_one_line():
    with pytest.raises(UserError, match="equal, non-empty"):
        paired_change(np.ones(3, bool), np.ones(4, bool))
    with pytest.raises(UserError, match="level"):
        paired_change(np.ones(3, bool), np.ones(3, bool), level=1.5)


def test_seeds_interval_is_the_textbook_t_interval():
    from simxir.eval.paired import seeds_interval
    lo, hi = seeds_interval([1.0, 2.0, 3.0])          # mean 2, sd 1, t(0.975, 2) = 4.3027
    assert (lo, hi) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), rel=1e-6)
    assert all(math.isnan(x) for x in seeds_interval([1.0]))


def test_known_mcnemar_p_over_seeds():
    from simxir.eval.paired import paired_change_seeds
    before = np.array([True] * 10 + [False] * 10 + [True] * 80)
    after = before.copy()
    after[:1] = False                                    # 1 broken
    after[10:19] = True                                  # 9 fixed: exact p = 2 * 11 / 1024
    c = paired_change_seeds([before, before], [after, after], n_boot=500)
    assert c["mcnemar_p"] == pytest.approx([22 / 1024] * 2, rel=1e-9)
    assert c["change"] == pytest.approx(8.0) and c["changes"] == pytest.approx([8.0, 8.0])
    assert c["seed_ci_low"] == pytest.approx(8.0) == c["seed_ci_high"]     # no spread over seeds
    with pytest.raises(UserError, match="same test images"):
        paired_change_seeds([before, before[:50]], [after, after[:50]])


def test_bootstrap_interval_covers_the_true_paired_difference_at_its_rate():
    """Simulation: images fixed with p 0.06 and broken with p 0.03 (true change +3 points); the
    seed-averaged 95% interval of 3 seeds must cover +3 in about 95% of 300 experiments."""
    from simxir.eval.paired import paired_change_seeds
    rng = np.random.default_rng(0)
    n, covered, trials = 600, 0, 300
    for t in range(trials):
        befores, afters = [], []
        for _ in range(3):
            before = rng.random(n) < 0.5
            u = rng.random(n)
            after = np.where(before, u >= 0.06, u < 0.12)   # P(broken)=0.5*0.06, P(fixed)=0.5*0.12
            befores.append(before)
            afters.append(after)
        c = paired_change_seeds(befores, afters, n_boot=400, seed=t)
        covered += c["ci_low"] <= 3.0 <= c["ci_high"]
    # binomial sd of the rate at 300 trials: 1.3 points; 0.90-0.99 is > 3.5 sd either way
    assert 0.90 <= covered / trials <= 0.99
