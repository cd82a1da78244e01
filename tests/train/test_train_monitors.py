"""Collapse monitors against their definitions, and the collapse rule."""

from __future__ import annotations

import math

import pytest
import torch

from simxir.train.monitors import collapse_reasons, effective_rank, normalized_std, topk_correct


def test_normalized_std_is_about_one_over_sqrt_d_for_isotropic_and_zero_when_collapsed():
    torch.manual_seed(0)
    d = 64
    z = torch.randn(4096, d)
    assert normalized_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.03)
    collapsed = torch.randn(1, d).repeat(512, 1) + 1e-6 * torch.randn(512, d)
    assert normalized_std(collapsed) < 1e-5
    # definition: mean over dims of the batch std of the row-normalised matrix
    x = torch.randn(10, 5)
    xn = x / x.norm(dim=1, keepdim=True)
    assert normalized_std(x) == pytest.approx(float(xn.std(dim=0).mean()), rel=1e-6)


def test_effective_rank_matches_roy_vetterli():
    assert effective_rank(torch.eye(7)) == pytest.approx(7.0, rel=1e-9)
    assert effective_rank(torch.ones(20, 1) @ torch.randn(1, 9)) == pytest.approx(1.0, abs=1e-6)
    s = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(6, 4, dtype=torch.float64))
    r, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    x = q @ torch.diag(s) @ r.T
    p = s / s.sum()
    assert effective_rank(x) == pytest.approx(float(torch.exp(-(p * p.log()).sum())), rel=1e-9)


def test_collapse_rule():
    d = 128
    healthy = 1 / math.sqrt(d)
    assert not collapse_reasons(healthy, d, 30.0, 0.05, 1.5)
    assert collapse_reasons(0.01 * healthy, d, 30.0, 0.05, 1.5)    # embeddings all alike
    assert collapse_reasons(healthy, d, 1.2, 0.05, 1.5)            # features of rank ~1
    assert collapse_reasons(float("nan"), d, 30.0, 0.05, 1.5)


def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    y = torch.tensor([1, 2, 0])
    assert topk_correct(logits, y, (1, 2, 5)) == {1: 1, 2: 2, 5: 3}


def test_effective_rank_of_non_finite_features_is_nan_and_collapsed():
    x = torch.randn(16, 8)
    x[3, 2] = float("nan")
    assert math.isnan(effective_rank(x))
    x[3, 2] = float("inf")
    assert math.isnan(effective_rank(x))
    assert collapse_reasons(0.3, 8, effective_rank(x), 0.05, 1.5)


def test_spread_is_the_mean_per_dimension_batch_std():
    from simxir.train.monitors import spread

    z = torch.randn(50, 7, dtype=torch.float64) * torch.arange(1, 8)
    expected = sum(float(z[:, j].std()) for j in range(7)) / 7
    assert float(spread(z)) == pytest.approx(expected, rel=1e-6)
    assert float(spread(torch.ones(10, 3))) == 0.0


def test_collapse_reasons_name_the_rules_that_fire():
    from simxir.train.monitors import collapse_reasons

    assert collapse_reasons(0.1, 16, 10.0, 0.05, 1.5) == []
    assert collapse_reasons(0.001, 16, 10.0, 0.05, 1.5) == ["z_std"]
    assert collapse_reasons(0.001, 16, 1.0, 0.05, 1.5) == ["z_std", "feat_erank"]
    assert collapse_reasons(float("nan"), 16, 10.0, 0.05, 1.5) == ["non-finite"]


def test_the_spread_rule_joins_the_other_reasons():
    from simxir.train.monitors import collapse_label, collapse_reasons

    assert collapse_reasons(0.1, 16, 10.0, 0.05, 1.5, spread_ratio=0.5, min_spread_ratio=0.1) == []
    assert collapse_reasons(0.1, 16, 10.0, 0.05, 1.5, spread_ratio=0.05, min_spread_ratio=0.1) == ["z_spread"]
    assert collapse_reasons(0.001, 16, 10.0, 0.05, 1.5, 0.05, 0.1) == ["z_std", "z_spread"]
    assert collapse_reasons(0.001, 16, 10.0, 0.05, 1.5, None, 0.1) == ["z_std"]
    assert collapse_label({"collapse_reasons": "z_std+z_spread"}) == "COLLAPSED (z_std+z_spread)"
    assert collapse_label({"collapse_reasons": ""}) == "COLLAPSED"
