"""The converged experiment's README is computed from its numbers: the pooled tests and their Holm
correction, the geometry reading, and the README rebuilt from the committed evaluations."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student_t

from simxir.eval.paired import pack_outcomes

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("converged_table", ROOT / "benchmarks" / "experiments" /
                                               "converged_table.py")
table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table)


def _eval(rng: np.random.Generator, p: float, geometry: dict | None = None) -> dict:
    right = {"knn": {m: {"11": pack_outcomes(rng.random(200) < p)} for m in ("cosine", "euclidean")},
             "linear": pack_outcomes(rng.random(200) < p), "linear_top5": pack_outcomes(rng.random(200) < 0.9)}
    return {"n_test": 200, "right": right, "geometry": geometry or {"within_class_msd": 0.3,
                                                                     "between_class_msd": 0.4, "ratio": 0.75}}


def _holm(ps: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, written out."""
    m = len(ps)
    order = np.argsort(ps)
    adjusted = [0.0] * m
    best = 0.0
    for rank, i in enumerate(order):
        best = max(best, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = best
    return adjusted


def test_pooled_rows_are_paired_t_tests_with_holm_over_the_family():
    rng = np.random.default_rng(0)
    evals = {}
    for m in ("moco", "simclr"):
        for s in range(3):
            u = f"{m}-s{s}"
            evals[f"pre-{u}"] = _eval(rng, 0.5)
            evals[f"ft-{u}-standard"] = _eval(rng, 0.55)
            evals[f"cont-{u}"] = _eval(rng, 0.5)
    rows, lines = table.pooled(evals)
    assert {(r["arm"], r["reference"]) for r in rows} == {("standard", "before"), ("standard", "control"),
                                                          ("control", "before")}
    r = next(r for r in rows if r["arm"] == "standard" and r["reference"] == "before"
             and r["metric"] == "linear top-1")
    deltas = [100 * (table.right(evals[f"ft-{u}-standard"], ("linear",)).mean()
                     - table.right(evals[f"pre-{u}"], ("linear",)).mean())
              for u in (f"{m}-s{s}" for m in ("moco", "simclr") for s in range(3))]
    assert r["n"] == 6 and r["mean"] == pytest.approx(np.mean(deltas))
    tstat = np.mean(deltas) / (np.std(deltas, ddof=1) / math.sqrt(6))
    assert r["p"] == pytest.approx(2 * student_t.sf(abs(tstat), 5))
    assert r["worse"] == sum(d < 0 for d in deltas)
    for got, want in zip([x["p_holm"] for x in rows], _holm([x["p"] for x in rows])):
        assert got == pytest.approx(want)
    assert f"all {len(rows)} rows" in lines[2]


def test_geometry_names_global_contraction_only_when_both_distances_fall_together():
    def run(w0, w1, b0, b1):
        return {"before": {"within_class_msd": w0, "between_class_msd": b0, "ratio": w0 / b0},
                "after": {"within_class_msd": w1, "between_class_msd": b1, "ratio": w1 / b1}}

    shrink = [run(0.4, 0.3, 0.5, 0.376) for _ in range(5)]           # both -25 %, ratio ~ -0.3 %
    s = table.geometry_summary(shrink)
    assert s["global_contraction"] and s["between"]["fell"] == 5
    assert "global contraction" in table.geometry_text("SimXIR", s)
    separate = [run(0.4, 0.3, 0.5, 0.5) for _ in range(5)]           # within falls, between kept
    s = table.geometry_summary(separate)
    assert not s["global_contraction"] and s["ratio"]["median_pct"] == pytest.approx(-25)
    still = [run(0.4, 0.399, 0.5, 0.499) for _ in range(5)]          # < 5 %: nothing to name
    assert not table.geometry_summary(still)["global_contraction"]


def test_readme_rebuilds_from_the_committed_results(tmp_path):
    import shutil

    out = tmp_path / "converged"
    shutil.copytree(ROOT / "results" / "finetune" / "converged", out)
    committed = (out / "README.md").read_text()
    table.OUT = out
    evals = table.load_evals(None, True)
    res, text = table.build(evals, table.load_curves(None), table.load_walls(None), table.load_train_times(None, 60),
                            60, table.load_precisions(None))
    assert text in committed            # the README's body is what the committed numbers give
    assert "## What the numbers say" in text and "## Pooled over encoders" in text
    # a pretraining rerun that differs from the committed encoder keeps its lr = 0 arm out of the
    # SimXIR-vs-lr = 0 pooling
    vs_lr0 = [r for r in res["pooled"] if r["reference"] == "lr0"]
    differing = sum(not ok for ok in res["bases_identical"].values())
    assert all(r["n"] == len(res["bases_identical"]) - differing for r in vs_lr0)
