"""The label-free numbers against formulas written out independently (loops over pairs, numpy's
SVD, scipy's pdist) on small hand-made embeddings, their weighted forms, the jackknife interval and
the paired verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import t as student_t

from simxir.eval import labelfree as lf


def _emb(n=30, d=6, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, d)))


def _unit(x):
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_rankme_is_the_entropy_of_the_normalised_singular_values():
    for n, d in ((30, 6), (5, 12)):
        f = _emb(n, d)
        s = np.linalg.svd(f.numpy(), compute_uv=False)
        p = s / s.sum() + 1e-7
        assert lf.rankme(f) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-9)
    # rank-1 data: about 1; orthogonal equal-norm rows: d
    assert lf.rankme(torch.ones(10, 4, dtype=torch.float64)) == pytest.approx(1.0, abs=1e-4)
    assert lf.rankme(torch.eye(4, dtype=torch.float64) * 3) == pytest.approx(4.0, rel=1e-5)


def test_weights_count_rows_and_zero_weights_leave_rows_out():
    f, a, b = _emb(12, 5, 1), _emb(12, 5, 2), _emb(12, 5, 3)
    w = torch.tensor([2, 1, 0, 3, 1, 1, 0, 1, 2, 1, 1, 1], dtype=torch.float64)
    rep = torch.from_numpy(np.repeat(np.arange(12), w.numpy().astype(int)))
    assert lf.rankme(f, w) == pytest.approx(lf.rankme(f[rep]), rel=1e-9)
    assert lf.alignment(a, b, w) == pytest.approx(lf.alignment(a[rep], b[rep]), rel=1e-9)
    keep = w > 0
    w01 = keep.double()
    groups = np.arange(12) % 3
    assert lf.uniformity(f, w01) == pytest.approx(lf.uniformity(f[keep]), rel=1e-9)
    got, want = lf.cluster_geometry(f, groups, w01), lf.cluster_geometry(f[keep], groups[keep.numpy()])
    for k in ("within", "between", "ratio"):
        assert got[k] == pytest.approx(want[k], rel=1e-9)


def test_alignment_and_uniformity_follow_wang_and_isola():
    a, b = _emb(20, 4, 4), _emb(20, 4, 5)
    want_align = np.mean(np.sum((_unit(a) - _unit(b)) ** 2, axis=1))
    assert lf.alignment(a, b) == pytest.approx(want_align, rel=1e-12)
    want_unif = math.log(np.mean(np.exp(-2.0 * pdist(_unit(a), "sqeuclidean"))))
    assert lf.uniformity(a) == pytest.approx(want_unif, rel=1e-9)
    assert lf.alignment(a, a) == pytest.approx(0.0, abs=1e-12)


def test_cluster_geometry_against_loops_over_pairs():
    f = _emb(17, 3, 6)
    groups = np.array([0, 1, 2, 0, 1, 2, 0, 0, 1, 2, 2, 1, 0, 1, 2, 0, 1])
    z = _unit(f)
    within, between = [], []
    for c in range(3):
        m = z[groups == c]
        within.append(np.mean([np.sum((m[i] - m[j]) ** 2) for i in range(len(m)) for j in range(i + 1, len(m))]))
        for c2 in range(c + 1, 3):
            m2 = z[groups == c2]
            between.append(np.mean([np.sum((x - y) ** 2) for x in m for y in m2]))
    got = lf.cluster_geometry(f, groups)
    assert got["within"] == pytest.approx(np.mean(within), rel=1e-9)
    assert got["between"] == pytest.approx(np.mean(between), rel=1e-9)
    assert got["ratio"] == pytest.approx(np.mean(within) / np.mean(between), rel=1e-9)


def test_jackknife_interval_of_a_mean_by_hand():
    a, b = _emb(40, 4, 7), _emb(40, 4, 8)
    per_image = np.sum((_unit(a) - _unit(b)) ** 2, axis=1)
    blocks = 8
    cfg = lf.LabelFreeConfig(blocks=blocks, seed=3)
    feats = {"features": a, "view1": a, "view2": b}
    summary = lf.summarize(feats, np.arange(40) % 2, cfg)
    # the same blocks, written out: leave each block out, the mean of the rest
    block = np.empty(40, dtype=np.int64)
    block[np.random.default_rng(3).permutation(40)] = np.arange(40) % blocks
    loo = np.array([per_image[block != g].mean() for g in range(blocks)])
    se = math.sqrt((blocks - 1) / blocks * ((loo - loo.mean()) ** 2).sum())
    t = student_t.ppf(0.975, blocks - 1)
    lo, hi = summary["ci"]["alignment"]
    assert summary["alignment"] == pytest.approx(per_image.mean(), rel=1e-12)
    assert lo == pytest.approx(per_image.mean() - t * se, rel=1e-9)
    assert hi == pytest.approx(per_image.mean() + t * se, rel=1e-9)


def test_paired_change_verdicts():
    rng = np.random.default_rng(9)
    centres = _unit(rng.normal(size=(4, 8)))
    groups = np.repeat(np.arange(4), 25)
    before_f = torch.from_numpy(centres[groups] + 0.6 * rng.normal(size=(100, 8)))
    # after: every point pulled halfway to its group's centre (contraction of the groups)
    after_f = torch.from_numpy(centres[groups] + 0.3 * (before_f.numpy() - centres[groups]))
    before = {"features": before_f, "view1": before_f, "view2": before_f + 0.1}
    after = {"features": after_f, "view1": after_f, "view2": after_f + 0.1}
    cfg = lf.LabelFreeConfig(blocks=10)
    got = lf.paired(before, after, groups, cfg)
    assert got["within"]["verdict"] == "fell" and got["within"]["ci_high"] < 0
    assert got["ratio"]["verdict"] == "fell" and got["ratio"]["better_if"] == "lower"
    assert got["rankme"]["change"] == pytest.approx(lf.rankme(after_f) - lf.rankme(before_f))
    same = lf.paired(before, before, groups, cfg)
    assert all(v["change"] == 0 and v["verdict"] == "within noise" for v in same.values())
    assert set(got) == set(lf.METRICS) and all(v["meaning"] for v in got.values())


def test_kmeans_groups_find_separated_clusters():
    rng = np.random.default_rng(0)
    centres = np.eye(3) * 5
    x = torch.from_numpy(np.repeat(centres, 10, axis=0) + 0.05 * rng.normal(size=(30, 3)))
    g = lf.kmeans_groups(x, 3)
    assert len(np.unique(g)) == 3
    for c in range(3):
        assert len(np.unique(g[c * 10:(c + 1) * 10])) == 1
