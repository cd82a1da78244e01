"""Neighbourhood operators against literal, independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from simxir.dynamics.neighbourhoods import knn_indices, knn_operator, operator_from_matrix, radius_operator
from simxir.dynamics.steps import literal_step, normalize, step
from simxir.errors import UserError


def pseudocode_step(inputs, reps, eps, spherical=False):
    """Written out here independently: for each x, average reps over {x' : ||x'-x|| < eps}."""
    out = np.zeros_like(reps)
    for i in range(len(inputs)):
        acc, cnt = np.zeros(reps.shape[1]), 0
        for j in range(len(inputs)):
            if np.sqrt(((inputs[j] - inputs[i]) ** 2).sum()) < eps:
                acc += reps[j]
                cnt += 1
        out[i] = acc / cnt
        if spherical:
            out[i] /= np.sqrt((out[i] ** 2).sum())
    return out


@pytest.mark.parametrize("seed,n,d1,d2,eps", [(0, 60, 2, 3, 0.25), (1, 80, 3, 2, 0.4), (2, 50, 5, 4, 0.9)])
def test_radius_operator_equals_pseudocode(seed, n, d1, d2, eps):
    rng = np.random.default_rng(seed)
    x, f = rng.random((n, d1)), rng.standard_normal((n, d2))
    op = radius_operator(x, eps)
    got = step(op, torch.from_numpy(f)).numpy()
    assert np.abs(got - pseudocode_step(x, f, eps)).max() < 1e-10
    assert np.abs(literal_step(x, f, eps) - pseudocode_step(x, f, eps)).max() < 1e-10
    fs = f / np.linalg.norm(f, axis=1, keepdims=True)
    sph = step(op, torch.from_numpy(fs), spherical=True).numpy()
    assert np.abs(sph - pseudocode_step(x, fs, eps, spherical=True)).max() < 1e-10


def test_row_stochastic_and_self_included():
    rng = np.random.default_rng(3)
    x = rng.random((200, 2))
    for op in (radius_operator(x, 0.1), radius_operator(x, 0.1, weights="gaussian"),
               knn_operator(x, 7), knn_operator(x, 7, weights="gaussian", sigma=0.05)):
        m = op.to_scipy()
        assert np.allclose(np.asarray(m.sum(1)).ravel(), 1.0, atol=1e-12)
        assert (m.data > 0).all()
        assert (m.diagonal() > 0).all()
    assert (knn_operator(x, 7).degrees() == 7).all()


def test_strict_boundary_and_closed():
    # distances exactly representable: 3-4-5 triangle and a 0.5 step
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.5, 0.0], [10.0, 10.0]])
    strict = radius_operator(x, 5.0).to_scipy().toarray() > 0
    closed = radius_operator(x, 5.0, closed=True).to_scipy().toarray() > 0
    assert not strict[0, 1] and not strict[1, 0]          # ||x1-x0|| = 5, not < 5
    assert closed[0, 1] and closed[1, 0]                   # but <= 5
    assert strict[0, 2] and strict[3, 3] and not strict[0, 3]
    assert not (radius_operator(x, 0.5).to_scipy().toarray() > 0)[0, 2]


def test_duplicates_count_as_neighbours():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0]])
    f = np.array([[1.0], [3.0], [5.0]])
    got = step(radius_operator(x, 0.5), torch.from_numpy(f)).numpy()
    assert np.allclose(got.ravel(), [2.0, 2.0, 5.0])
    idx, _ = knn_indices(x, 2)
    assert (idx[:, 0] == np.arange(3)).all()


def test_knn_matches_brute_force_and_backends():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((150, 5))
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    k = 6
    ref = np.sort(np.argsort(d, axis=1, kind="stable")[:, :k], axis=1)
    for index in ("kdtree", "torch"):
        op = knn_operator(x, k, index=index)
        assert (np.sort(op.indices.reshape(-1, k), 1) == ref).all()
    f = rng.standard_normal((150, 2))
    got = knn_operator(x, k).apply(torch.from_numpy(f)).numpy()
    assert np.abs(got - f[ref].mean(1)).max() < 1e-12


def test_gaussian_weights_formula():
    rng = np.random.default_rng(5)
    x = rng.random((40, 2))
    sigma = 0.07
    op = radius_operator(x, 0.2, weights="gaussian", sigma=sigma)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    w = np.exp(-d ** 2 / (2 * sigma ** 2)) * (d < 0.2)
    w /= w.sum(1, keepdims=True)
    assert np.abs(op.to_scipy().toarray() - w).max() < 1e-12


def test_faiss_index_optional():
    pytest.importorskip("faiss")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    ref = knn_operator(x, 5, index="torch").indices.reshape(-1, 5)
    got = knn_operator(x, 5, index="faiss").indices.reshape(-1, 5)
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ref, got)])
    assert recall > 0.9
    assert (got == np.arange(500)[:, None]).any(1).all()   # self always included


def test_operator_from_matrix_and_errors():
    w = sp.csr_matrix(np.array([[2.0, 2.0], [0.0, 1.0]]))
    op = operator_from_matrix(w)
    assert np.allclose(op.to_scipy().toarray(), [[0.5, 0.5], [0.0, 1.0]])
    with pytest.raises(UserError):
        operator_from_matrix(np.array([[1.0, 0.0], [0.0, 0.0]]))
    with pytest.raises(UserError, match="eps"):
        radius_operator(np.zeros((3, 2)), 0.0)
    with pytest.raises(UserError, match="k"):
        knn_operator(np.zeros((3, 2)), 5)
    with pytest.raises(UserError, match="inputs"):
        radius_operator(np.array([[np.nan, 0.0]]), 1.0)
    with pytest.raises(UserError, match="reps"):
        radius_operator(np.zeros((3, 2)), 1.0).apply(torch.zeros(4, 2))


def test_normalize_keeps_zero_rows():
    f = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert torch.allclose(normalize(f), torch.tensor([[0.6, 0.8], [0.0, 0.0]]))


def test_apply_follows_input_dtype():
    x = np.random.default_rng(7).random((30, 2))
    op = radius_operator(x, 0.3)
    f = torch.randn(30, 3)
    assert op.apply(f).dtype == torch.float32 and op.apply(f.double()).dtype == torch.float64


@pytest.mark.parametrize("backend", ["torch", "scipy", "auto"])
def test_backends_agree(backend):
    rng = np.random.default_rng(8)
    x, f = rng.random((300, 2)), rng.standard_normal((300, 3))
    op = radius_operator(x, 0.15)
    op.backend = backend
    ref = op.to_scipy().toarray() @ f
    for dt in (torch.float64, torch.float32):
        got = op.apply(torch.from_numpy(f).to(dt))
        assert got.dtype == dt
        assert np.abs(got.double().numpy() - ref).max() < (1e-12 if dt == torch.float64 else 1e-5)
