"""How sure is a before/after change? Paired statistics over the same test images.

Both encoders classify the same test images, so the change of accuracy is judged from the per-image
pairs (right before, right after): a percentile bootstrap over test images for the 95% interval of
the change, and McNemar's exact test on the discordant images (right only before vs right only
after) for its two-sided p-value.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping
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


def call(change: Mapping[str, Any]) -> str:
    """The rule for calling a change real: ``gain`` / ``loss`` when the bootstrap interval excludes
    zero AND McNemar's test agrees (p < 0.05; with a handful of discordant images the percentile
    bootstrap alone is too eager), ``borderline gain`` / ``borderline loss`` when only the interval
    does, else ``within noise``."""
    if change["ci_low"] > 0 or change["ci_high"] < 0:
        word = "gain" if change["ci_low"] > 0 else "loss"
        return word if change["mcnemar_p"] < 0.05 else f"borderline {word}"
    return "within noise"


def seeds_call(change: Mapping[str, Any]) -> str:
    """The rule for a seed-averaged change (:func:`paired_change_seeds`): ``gain`` / ``loss`` when
    its interval over test images and its interval over seeds (two seeds at least) both exclude 0,
    else ``within noise``."""
    several = change["seeds"] >= 2
    if change["ci_low"] > 0 and several and change["seed_ci_low"] > 0:
        return "gain"
    if change["ci_high"] < 0 and several and change["seed_ci_high"] < 0:
        return "loss"
    return "within noise"


def verdict(change: dict[str, Any]) -> str:
    """One plain sentence: a gain, a loss, borderline, or within noise (the interval holds zero)."""
    ci = f"{change['change']:+.2f} points, {change['level']:.0%} CI [{change['ci_low']:+.2f}, {change['ci_high']:+.2f}]"
    p = change["mcnemar_p"]
    ptxt = f"McNemar p = {p:.2g}" if not math.isnan(p) else ""
    word = call(change)
    if word in ("gain", "loss"):
        return f"a {word} ({ci}; {ptxt})"
    if word.startswith("borderline"):
        return (f"a {word}: the interval excludes zero but McNemar's test does not "
                f"confirm it ({ci}; {ptxt})")
    return (f"within noise ({ci}; {ptxt}; {change['only_after']} test images fixed, "
            f"{change['only_before']} broken)")


def pack_outcomes(right: Any) -> str:
    """A per-image correctness vector as text for JSON: its bits packed, base64."""
    return base64.b64encode(np.packbits(np.asarray(right, dtype=bool).ravel()).tobytes()).decode()


def unpack_outcomes(text: str, n: int) -> np.ndarray:
    """:func:`pack_outcomes`'s inverse for ``n`` images."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n].astype(bool)


def labels_digest(labels: Any) -> str:
    """A short fingerprint of the test labels: two results are paired only on the same images."""
    return hashlib.sha1(np.asarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]


def outcome_cells(result: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The per-image outcomes of a ``simxir eval --json`` result, one per table cell:
    ``{"kNN cos k=11": (n,) bool, ..., "linear top-1": ..., "linear top-5": ...}`` (empty without them)."""
    right, n = result.get("right") or {}, result.get("n_test")
    if not right or not n:
        return {}
    cells = {}
    for metric, by_k in (right.get("knn") or {}).items():
        for k in sorted(by_k, key=int):
            cells[f"kNN {metric[:3]} k={k}"] = unpack_outcomes(by_k[k], n)
    for key, name in (("linear", "linear top-1"), ("linear_top5", "linear top-5")):
        if right.get(key):
            cells[name] = unpack_outcomes(right[key], n)
    return cells


def paired_cells(before: Mapping[str, Any], after: Mapping[str, Any], seed: int = 0,
                 what: str = "before/after") -> dict[str, dict[str, Any]]:
    """:func:`paired_change` (with its ``call``) for every cell both results hold per-image outcomes
    of ({} when either has none); refused when they were measured on different test images."""
    b, a = outcome_cells(before), outcome_cells(after)
    if not b or not a:
        return {}
    if before.get("n_test") != after.get("n_test") or before.get("labels") != after.get("labels"):
        raise UserError(f"{what}: the two evaluations scored different test images ({before.get('n_test')} "
                        f"vs {after.get('n_test')} images, labels {before.get('labels')} vs "
                        f"{after.get('labels')}); pair only evaluations on the same data")
    out = {}
    for name in (n for n in b if n in a):
        c = paired_change(b[name], a[name], seed=seed)
        out[name] = {**c, "call": call(c)}
    return out


def add_outcomes(result: dict[str, Any], knn_right: Mapping[str, Mapping[str, Any]] | None,
                 linear_right: Mapping[str, Any] | None, labels: Any) -> dict[str, Any]:
    """Put per-image outcomes (bool vectors from ``knn_classify`` / ``linear_probe`` with
    ``outcomes=True``) into ``result`` as ``right`` (packed), ``n_test`` and ``labels`` (digest)."""
    right: dict[str, Any] = {}
    if knn_right:
        right["knn"] = {m: {k: pack_outcomes(v) for k, v in by_k.items()} for m, by_k in knn_right.items()}
    if linear_right:
        right["linear"] = pack_outcomes(linear_right["top1"])
        right["linear_top5"] = pack_outcomes(linear_right["top5"])
    if right:
        result.setdefault("right", {}).update(right)
        result.update(n_test=int(np.asarray(labels).size), labels=labels_digest(labels))
    return result
