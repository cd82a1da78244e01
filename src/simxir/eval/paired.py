"""How sure is a before/after change? Paired statistics over the same test images.

Both encoders classify the same test images, so the change of accuracy is judged from the per-image
pairs (right before, right after): a percentile bootstrap over test images for the 95% interval of
the change, and McNemar's exact test on the discordant images (right only before vs right only
after) for its two-sided p-value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import binomtest
from scipy.stats import t as student_t

from simxir.errors import UserError


def paired_change(correct_before: np.ndarray, correct_after: np.ndarray, n_boot: int = 2000,
                  level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The change of accuracy (percentage points) between two per-image correctness vectors.

    Returns ``{"before", "after", "change", "ci_low", "ci_high", "level", "only_before",
    "only_after", "mcnemar_p", "n"}``: accuracies in percent, the bootstrap interval (``n_boot``
    resamples of the test images with replacement, percentile method, seeded), the discordant
    counts and McNemar's exact two-sided p (1.0 when no image changed).
    """
    a = np.asarray(correct_before, dtype=bool).ravel()
    b = np.asarray(correct_after, dtype=bool).ravel()
    if a.shape != b.shape or a.size == 0:
        raise UserError(f"paired change: expected two equal, non-empty correctness vectors, got "
                        f"{a.size} and {b.size} images")
    if not 0 < level < 1 or n_boot < 1:
        raise UserError(f"paired change: expected 0 < level < 1 and n_boot >= 1, got {level}, {n_boot}")
    n = a.size
    diff = b.astype(np.int64) - a.astype(np.int64)          # +1 fixed, -1 broken, 0 unchanged
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    boot = diff[idx].mean(axis=1) * 100.0
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    only_before, only_after = int((diff < 0).sum()), int((diff > 0).sum())
    discordant = only_before + only_after
    p = binomtest(only_after, discordant, 0.5).pvalue if discordant else 1.0
    return {"before": 100.0 * a.mean(), "after": 100.0 * b.mean(), "change": 100.0 * diff.mean(),
            "ci_low": float(lo), "ci_high": float(hi), "level": level, "only_before": only_before,
            "only_after": only_after, "mcnemar_p": float(p), "n": n}


def paired_change_seeds(correct_before: list[np.ndarray], correct_after: list[np.ndarray], n_boot: int = 2000,
                        level: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """The seed-averaged change of accuracy (points) of several (before, after) pairs on the same
    test images (one pair per seed), with two 95% intervals:

    - ``ci_low/ci_high``: over test images, a percentile bootstrap that resamples the same image
      indices for every seed and averages the seeds' changes (the seeds are held fixed);
    - ``seed_ci_low/seed_ci_high``: over seeds, Student's t interval of the per-seed changes
      (nan with one seed); ``changes``: those per-seed changes; ``mcnemar_p``: each seed's test.
    """
    if len(correct_before) != len(correct_after) or not correct_before:
        raise UserError(f"paired change over seeds: expected as many before as after vectors (>= 1), got "
                        f"{len(correct_before)} and {len(correct_after)}")
    per = [paired_change(a, b, n_boot=1, level=level, seed=seed) for a, b in zip(correct_before, correct_after)]
    if len({c["n"] for c in per}) != 1:
        raise UserError("paired change over seeds: every seed must score the same test images")
    diff = np.stack([np.asarray(b, bool).ravel().astype(np.int64) - np.asarray(a, bool).ravel().astype(np.int64)
                     for a, b in zip(correct_before, correct_after)]).mean(axis=0)
    n = diff.size
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    boot = diff[idx].mean(axis=1) * 100.0
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    changes = [c["change"] for c in per]
    s_lo, s_hi = seeds_interval(changes, level)
    return {"change": float(np.mean(changes)), "ci_low": float(lo), "ci_high": float(hi),
            "seed_ci_low": s_lo, "seed_ci_high": s_hi, "changes": changes, "level": level,
            "mcnemar_p": [c["mcnemar_p"] for c in per], "before": float(np.mean([c["before"] for c in per])),
            "after": float(np.mean([c["after"] for c in per])), "seeds": len(per), "n": n}


def seeds_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """Student's t interval of the mean of ``values`` (nan, nan with fewer than two)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return math.nan, math.nan
    half = float(student_t.ppf((1 + level) / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return float(v.mean() - half), float(v.mean() + half)


def verdict(change: dict[str, Any]) -> str:
    """One plain sentence: a gain, a loss, borderline, or within noise (the interval holds zero)."""
    ci = f"{change['change']:+.2f} points, {change['level']:.0%} CI [{change['ci_low']:+.2f}, {change['ci_high']:+.2f}]"
    p = change["mcnemar_p"]
    ptxt = f"McNemar p = {p:.2g}" if not math.isnan(p) else ""
    # a change counts when the bootstrap interval excludes zero AND McNemar's test agrees (p < 0.05):
    # with a handful of discordant images the percentile bootstrap alone is too eager
    if change["ci_low"] > 0 or change["ci_high"] < 0:
        word = "gain" if change["ci_low"] > 0 else "loss"
        if p < 0.05:
            return f"a {word} ({ci}; {ptxt})"
        return (f"a borderline {word}: the interval excludes zero but McNemar's test does not "
                f"confirm it ({ci}; {ptxt})")
    return (f"within noise ({ci}; {ptxt}; {change['only_after']} test images fixed, "
            f"{change['only_before']} broken)")
