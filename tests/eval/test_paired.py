"""Paired before/after statistics against independently written formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

from simxir.errors import UserError
from simxir.eval.linear import LinearProbeConfig
from simxir.eval.paired import (
    call,
    labels_digest,
    outcome_cells,
    pack_outcomes,
    paired_cells,
    paired_change,
    unpack_outcomes,
    verdict,
)


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


def test_bootstrap_interval_equals_the_exact_bootstrap_of_a_small_case():
    """Five images: all 5^5 resamples enumerated by hand give the exact bootstrap distribution of the
    mean change; the seeded percentile interval lands on its 2.5% / 97.5% quantiles."""
    import itertools

    before = np.array([1, 1, 0, 0, 1], bool)
    after = np.array([1, 0, 1, 1, 1], bool)           # d = (0, -1, +1, +1, 0)
    d = after.astype(int) - before.astype(int)
    means = np.array([100 * sum(d[list(i)]) / 5 for i in itertools.product(range(5), repeat=5)])
    values = np.unique(means)
    cdf = np.array([(means <= v).mean() for v in values])      # P(mean change <= v), exactly
    lo, hi = values[np.searchsorted(cdf, 0.025)], values[np.searchsorted(cdf, 0.975)]
    # the exact CDF must not sit on 2.5 % / 97.5 % at a jump, or sampling noise could pick either side
    assert all(abs(c - q) > 0.003 for c in cdf for q in (0.025, 0.975))
    c = paired_change(before, after, n_boot=200_000, seed=7)
    assert (c["ci_low"], c["ci_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert c["change"] == pytest.approx(20.0)
    assert c["mcnemar_p"] == pytest.approx(_mcnemar_exact(2, 1))


def test_call_needs_interval_and_mcnemar():
    base = {"change": 1.0, "level": 0.95, "only_after": 9, "only_before": 1}
    assert call({**base, "ci_low": 0.1, "ci_high": 2.0, "mcnemar_p": 0.01}) == "gain"
    assert call({**base, "ci_low": 0.1, "ci_high": 2.0, "mcnemar_p": 0.2}) == "borderline gain"
    assert call({**base, "ci_low": -2.0, "ci_high": -0.1, "mcnemar_p": 0.01}) == "loss"
    assert call({**base, "ci_low": -0.1, "ci_high": 2.0, "mcnemar_p": 0.01}) == "within noise"


def test_outcomes_pack_round_trip_and_agree_with_the_reported_accuracies():
    import torch

    from simxir.eval import evaluate_features

    g = torch.Generator().manual_seed(0)
    tr, te = torch.randn(120, 6, generator=g), torch.randn(37, 6, generator=g)
    ytr, yte = torch.randint(0, 4, (120,), generator=g), torch.randint(0, 4, (37,), generator=g)
    r = evaluate_features(tr, ytr, te, yte, knn_ks=(3, 5), linear_cfg=LinearProbeConfig(epochs=3),
                          show_progress=False, outcomes=True)
    assert r["n_test"] == 37 and r["labels"] == labels_digest(yte.numpy())
    cells = outcome_cells(r)
    assert set(cells) == {"kNN cos k=3", "kNN cos k=5", "kNN euc k=3", "kNN euc k=5", "linear top-1", "linear top-5"}
    for name, right in cells.items():
        if name.startswith("kNN"):
            metric = "cosine" if " cos " in name else "euclidean"
            assert 100 * right.mean() == pytest.approx(r["knn"][metric][name.rsplit("=", 1)[1]])
    assert 100 * cells["linear top-1"].mean() == pytest.approx(r["linear"]["top1"])
    assert 100 * cells["linear top-5"].mean() == pytest.approx(r["linear"]["top5"])
    bits = np.random.default_rng(0).random(37) < 0.5
    assert (unpack_outcomes(pack_outcomes(bits), 37) == bits).all()


def test_paired_cells_refuse_other_images_and_skip_results_without_outcomes():
    bits = np.ones(10, bool)
    one = {"n_test": 10, "labels": "a", "right": {"linear": pack_outcomes(bits), "linear_top5": pack_outcomes(bits)}}
    assert paired_cells(one, {"linear": {"top1": 50.0}}) == {}
    with pytest.raises(UserError, match="different test images"):
        paired_cells(one, {**one, "labels": "b"})
    same = paired_cells(one, one)
    assert set(same) == {"linear top-1", "linear top-5"} and same["linear top-1"]["change"] == 0


def test_eval_compare_pairs_two_saved_results(tmp_path, cli):
    import json

    rng = np.random.default_rng(3)
    before_bits, after_bits = rng.random(300) < 0.6, rng.random(300) < 0.7
    def result(bits):
        return {"knn": {"cosine": {"11": 100 * bits.mean()}}, "n_test": 300, "labels": "x",
                "right": {"knn": {"cosine": {"11": pack_outcomes(bits)}}}}
    (tmp_path / "b.json").write_text(json.dumps(result(before_bits)))
    (tmp_path / "a.json").write_text(json.dumps(result(after_bits)))
    r = cli(["eval", "--compare", tmp_path / "b.json", tmp_path / "a.json", "--json"])
    assert r.code == 0, r.err_lines
    got = r.json["paired"]["kNN cos k=11"]
    want = paired_change(before_bits, after_bits, seed=0)
    assert {k: got[k] for k in want} == pytest.approx(want)
    text = cli(["eval", "--compare", tmp_path / "b.json", tmp_path / "a.json"])
    assert "kNN cos k=11" in text.out and "McNemar" in text.out
    (tmp_path / "old.json").write_text(json.dumps({"knn": {"cosine": {"11": 50.0}}}))
    bad = cli(["eval", "--compare", tmp_path / "old.json", tmp_path / "a.json", "--json"])
    assert bad.code == 2 and "old.json" in bad.error and "per-image outcomes" in bad.error
    assert bad.json["status"] == "error"


def test_seed_averaged_changes_need_both_intervals_and_two_seeds():
    from simxir.eval.paired import seeds_call

    base = {"ci_low": 0.2, "ci_high": 2.0, "seed_ci_low": 0.1, "seed_ci_high": 1.9, "seeds": 3}
    assert seeds_call(base) == "gain"
    assert seeds_call({**base, "seed_ci_low": -0.1}) == "within noise"
    assert seeds_call({**base, "seeds": 1, "seed_ci_low": math.nan, "seed_ci_high": math.nan}) == "within noise"
    worse = {"ci_low": -2.0, "ci_high": -0.2, "seed_ci_low": -1.9, "seed_ci_high": -0.1, "seeds": 2}
    assert seeds_call(worse) == "loss"
