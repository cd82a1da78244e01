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
