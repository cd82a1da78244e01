"""Components and metrics against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from simxir.dynamics.groups import check_labels, components, is_closed
from simxir.dynamics.metrics import GroupMetrics, diameter_bounds
from simxir.dynamics.neighbourhoods import knn_operator, radius_operator
from simxir.errors import UserError


def bfs_components(adj: np.ndarray) -> np.ndarray:
    """Written out: undirected reachability over (i->j or j->i) edges."""
    n = len(adj)
    sym = adj | adj.T
    lab = -np.ones(n, dtype=int)
    g = 0
    for s in range(n):
        if lab[s] >= 0:
            continue
        stack = [s]
        lab[s] = g
        while stack:
            u = stack.pop()
            for v in np.flatnonzero(sym[u]):
                if lab[v] < 0:
                    lab[v] = g
                    stack.append(v)
        g += 1
    return lab


@pytest.mark.parametrize("seed", range(5))
def test_components_match_bfs(seed):
    rng = np.random.default_rng(seed)
    x = rng.random((120, 2))
    for op in (radius_operator(x, 0.08), knn_operator(x, 2)):
        adj = op.to_scipy().toarray() > 0
        ref = bfs_components(adj)
        got = components(op)
        # same partition (labels may be permuted)
        assert len(set(zip(ref, got))) == ref.max() + 1 == got.max() + 1
        assert is_closed(op, got)
    lab = np.zeros(120, dtype=int)
    lab[:60] = 1
    assert not is_closed(radius_operator(x, 0.5), lab)


def test_check_labels():
    assert (check_labels(np.array([5, 5, 9]), 3) == [0, 0, 1]).all()
    with pytest.raises(UserError, match="groups"):
        check_labels(np.array([0, 1]), 3)
    with pytest.raises(UserError, match="integer"):
        check_labels(np.array([0.5, 1, 2]), 3)


def brute(f: np.ndarray, lab: np.ndarray):
    G = lab.max() + 1
    diam, msd = [], []
    for g in range(G):
        a = f[lab == g]
        dd = np.linalg.norm(a[:, None] - a[None], axis=-1)
        diam.append(dd.max())
        msd.append((dd ** 2).mean())
    mind, inter = {}, {}
    for g, h in itertools.combinations(range(G), 2):
        dd = np.linalg.norm(f[lab == g][:, None] - f[lab == h][None], axis=-1)
        mind[(g, h)], inter[(g, h)] = dd.min(), (dd ** 2).mean()
    return np.array(diam), np.array(msd), mind, inter


@pytest.mark.parametrize("d", [1, 2, 3, 7])
def test_metrics_match_brute_force(d):
    rng = np.random.default_rng(d)
    lab = rng.integers(0, 4, 300)
    f = rng.standard_normal((300, d)) + lab[:, None]
    gm = GroupMetrics(lab)
    m = gm(torch.from_numpy(f))
    diam, msd, mind, inter = brute(f, lab)
    assert np.allclose(m["diameter"], diam, rtol=1e-10) and m["diameter_exact"].all()
    assert np.allclose(m["intra_msd"], msd, rtol=1e-10)
    for p, (g, h) in enumerate(gm.pairs):
        assert m["min_distance"][p] == pytest.approx(mind[(g, h)], rel=1e-10)
        assert m["inter_msd"][p] == pytest.approx(inter[(g, h)], rel=1e-10)
    assert np.allclose(m["mean_drift"], 0)
    shift = np.arange(4)[lab][:, None] * np.ones(d)
    m2 = gm(torch.from_numpy(f + shift))
    assert np.allclose(m2["mean_drift"], np.arange(4) * np.sqrt(d))


@pytest.mark.parametrize("d", [2, 3, 6])
def test_large_groups_paths(d):
    """Groups above exact_max: hull (d<=3) is exact, double sweep brackets; pruning keeps min exact."""
    rng = np.random.default_rng(10 + d)
    lab = np.repeat([0, 1], [700, 500])
    f = rng.standard_normal((1200, d))
    f[lab == 1, 0] += 6.0
    gm = GroupMetrics(lab, exact_max=100, pair_budget=20_000, sample=64)
    m = gm(torch.from_numpy(f))
    diam, _, mind, _ = brute(f, lab)
    lo, hi = m["diameter"], m["diameter_upper"]
    assert (lo <= diam + 1e-9).all() and (diam <= hi + 1e-9).all() and (hi <= 2 * lo + 1e-9).all()
    if d <= 3:
        assert m["diameter_exact"].all() and np.allclose(lo, diam, rtol=1e-10)
    if m["min_distance_exact"][0]:
        assert m["min_distance"][0] == pytest.approx(mind[(0, 1)], rel=1e-10)
    else:  # stated estimate: bracket
        assert m["min_distance_lower"][0] - 1e-9 <= mind[(0, 1)] <= m["min_distance"][0] + 1e-9


def test_estimate_brackets_when_pruning_fails():
    """Overlapping high-d groups: no pruning, so min distance is a stated bracket, not exact."""
    rng = np.random.default_rng(1)
    lab = np.repeat([0, 1], 400)
    f = rng.standard_normal((800, 10))
    gm = GroupMetrics(lab, pair_budget=1000, sample=50)
    m = gm(torch.from_numpy(f))
    _, _, mind, _ = brute(f, lab)
    assert not m["min_distance_exact"][0]
    assert m["min_distance_lower"][0] <= mind[(0, 1)] <= m["min_distance"][0]


def test_diameter_bounds_double_sweep():
    rng = np.random.default_rng(2)
    for _ in range(20):
        a = torch.from_numpy(rng.standard_normal((50, 4)))
        lo, hi = diameter_bounds(a)
        true = float(torch.cdist(a, a).max())
        assert lo <= true + 1e-12 and true <= hi + 1e-12 and hi <= 2 * lo + 1e-12


def test_pairs_limited_to_largest_groups():
    lab = np.repeat(np.arange(6), [5, 50, 4, 40, 3, 30])
    gm = GroupMetrics(lab, max_pair_groups=3)
    assert sorted(map(tuple, gm.pairs.tolist())) == [(1, 3), (1, 5), (3, 5)]
    with pytest.raises(UserError):
        gm(torch.zeros(10, 2))


def test_subsample_mode_brackets_truth():
    rng = np.random.default_rng(3)
    lab = np.repeat([0, 1], [600, 500])
    f = rng.standard_normal((1100, 5))
    f[lab == 1, 0] += 5.0
    m = GroupMetrics(lab, subsample=100)(torch.from_numpy(f))
    diam, msd, mind, _ = brute(f, lab)
    assert not m["diameter_exact"].any() and not m["min_distance_exact"].any()
    assert (m["diameter"] <= diam + 1e-9).all() and (diam <= m["diameter_upper"] + 1e-9).all()
    assert m["min_distance_lower"][0] - 1e-9 <= mind[(0, 1)] <= m["min_distance"][0] + 1e-9
    assert np.allclose(m["intra_msd"], msd, rtol=1e-10)     # moments stay exact
