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
