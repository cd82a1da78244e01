"""Label propagation and clustering accuracy against independent formulas."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from simxir.dynamics.neighbourhoods import knn_operator, radius_operator
from simxir.dynamics.propagation import clustering_accuracy, label_propagation, smooth_then_kmeans
from simxir.errors import UserError


def test_harmonic_equals_iterative_and_dense_solution():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.3, (40, 2)), rng.normal(3, 0.3, (40, 2))])
    y = np.repeat([0, 1], 40)
    labeled = np.zeros(80, dtype=bool)
    labeled[[0, 1, 40, 41]] = True
    op = knn_operator(x, 6, weights="gaussian")
    h = label_propagation(op, y, labeled, method="harmonic")
    it = label_propagation(op, y, labeled, method="iterative", iters=5000, tol=1e-13)
    assert np.abs(h - it).max() < 1e-8
    # dense harmonic solution written out: f_u = (I - P_uu)^-1 P_ul Y_l
    P = op.to_scipy().toarray()
    u, l_ = ~labeled, labeled
    Y = np.eye(2)[y[l_]]
    fu = np.linalg.solve(np.eye(u.sum()) - P[np.ix_(u, u)], P[np.ix_(u, l_)] @ Y)
    assert np.abs(h[u] - fu).max() < 1e-9
    assert (h[labeled] == Y).all()                     # clamped
    assert np.allclose(h.sum(1), 1.0)                  # scores are a distribution
    assert (h.argmax(1) == y).mean() > 0.95


def test_propagation_errors():
    op = radius_operator(np.zeros((3, 1)), 1.0)
    with pytest.raises(UserError, match="labeled"):
        label_propagation(op, np.zeros(3, int), np.zeros(3, bool))
    with pytest.raises(UserError, match="method"):
        label_propagation(op, np.zeros(3, int), np.ones(3, bool), method="magic")


def test_clustering_accuracy_is_best_permutation():
    rng = np.random.default_rng(1)
    for _ in range(20):
        t, p = rng.integers(0, 3, 30), rng.integers(0, 3, 30)
        best = max((np.array(perm)[p] == t).mean() for perm in itertools.permutations(range(3)))
        assert clustering_accuracy(t, p) == pytest.approx(best)


def test_smoothing_then_kmeans_on_blobs():
    """Two touching blobs: averaging within eps pulls points towards their blob."""
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(2.5, 1, (100, 2))])
    y = np.repeat([0, 1], 100)
    op = radius_operator(x, 0.8)
    before = clustering_accuracy(y, smooth_then_kmeans(op, x, 0, 2))
    after = clustering_accuracy(y, smooth_then_kmeans(op, x, 5, 2))
    assert 0.5 <= before <= 1 and 0.5 <= after <= 1
    f = torch.from_numpy(x)
    assert torch.allclose(op.apply(f), torch.from_numpy(op.to_scipy() @ x))
