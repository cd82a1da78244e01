"""Predictor diagnostics checked against hand-derived values for constructed matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from simxir.analysis.predictor import (
    asymmetry,
    diagnostics_history,
    dist_to_scaled_identity,
    eigenvalue_trajectories,
    eigenvalues,
    load_predictor,
    load_predictor_history,
    offdiag_energy,
    predictor_diagnostics,
    scaled_identity_coefficient,
)
from simxir.errors import UserError


@pytest.mark.parametrize("theta", [0.3, 1.0, 2.5])
def test_rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    w = np.array([[c, -s], [s, c]])
    # ||W||_F = sqrt(2); W - W^T has two entries +-2s; W - cos*I has two entries +-s
    assert asymmetry(w) == pytest.approx(2 * abs(s))
    assert offdiag_energy(w) == pytest.approx(s * s)
    assert dist_to_scaled_identity(w) == pytest.approx(abs(s))
    assert scaled_identity_coefficient(w) == pytest.approx(c)
    np.testing.assert_allclose(eigenvalues(w), [c, c], atol=1e-12)


def test_scaled_identity_and_symmetric():
    w = -1.7 * np.eye(5)
    d = predictor_diagnostics(w)
    assert d["asymmetry"] == 0 and d["offdiag_energy"] == 0 and d["dist_to_scaled_identity"] == 0
    assert d["eigenvalues"] == [-1.7] * 5
    a = np.random.default_rng(0).standard_normal((6, 6))
    assert asymmetry(a + a.T) == pytest.approx(0.0, abs=1e-15)
    assert asymmetry(a - a.T) == pytest.approx(2.0)  # skew-symmetric: W - W^T = 2W


def test_triangular_by_hand():
    a, b, dd = 2.0, 3.0, -1.0
    w = np.array([[a, b], [0.0, dd]])
    norm2 = a * a + b * b + dd * dd
    assert asymmetry(w) == pytest.approx(math.sqrt(2 * b * b / norm2))
    assert offdiag_energy(w) == pytest.approx(b * b / norm2)
    c = (a + dd) / 2
    assert dist_to_scaled_identity(w) == pytest.approx(math.sqrt(((a - c) ** 2 + b * b + (dd - c) ** 2) / norm2))
    np.testing.assert_allclose(eigenvalues(w), [a, dd])


def test_known_eigenvalues_and_numeric_minimum():
    rng = np.random.default_rng(1)
    lam = np.array([3.0, 1.5, 0.25, -0.5, -2.0])
    p = rng.standard_normal((5, 5)) + 3 * np.eye(5)
    w = p @ np.diag(lam) @ np.linalg.inv(p)
    np.testing.assert_allclose(eigenvalues(w), lam, atol=1e-9)
    res = minimize_scalar(lambda c: np.linalg.norm(w - c * np.eye(5)), bounds=(-50, 50), method="bounded",
                          options={"xatol": 1e-10})
    assert dist_to_scaled_identity(w) == pytest.approx(res.fun / np.linalg.norm(w), rel=1e-6)
    assert scaled_identity_coefficient(w) == pytest.approx(lam.sum() / 5)  # trace = sum of eigenvalues
    np.testing.assert_allclose(eigenvalues(torch.tensor(w, dtype=torch.float32)), lam, atol=1e-4)


def test_complex_pairs_keep_real_parts_sorted():
    w = np.zeros((4, 4))
    w[:2, :2] = [[0.5, -2.0], [2.0, 0.5]]  # 0.5 +- 2i
    w[2, 2], w[3, 3] = 1.0, -1.0
    np.testing.assert_allclose(eigenvalues(w), [1.0, 0.5, 0.5, -1.0], atol=1e-12)


def test_zero_matrix_is_nan():
    z = np.zeros((3, 3))
    assert math.isnan(asymmetry(z)) and math.isnan(offdiag_energy(z)) and math.isnan(dist_to_scaled_identity(z))


@pytest.mark.parametrize("bad", [np.zeros((2, 3)), np.zeros(4), np.array([[np.inf]]), np.zeros((0, 0))])
def test_bad_matrices(bad):
    with pytest.raises(UserError, match="predictor"):
        asymmetry(bad)


def test_history_from_run_folder(tmp_path):
    folder = tmp_path / "predictor"
    folder.mkdir()
    mats = {e: np.diag([float(e), 1.0, -float(e)]) for e in (10, 2, 1)}
    for e, m in mats.items():
        np.save(folder / f"epoch_{e:04d}.npy", m.astype(np.float32))
    (folder / "notes.txt").write_text("ignored")
    epochs, loaded = load_predictor_history(tmp_path)
    assert epochs == [1, 2, 10]
    traj = eigenvalue_trajectories(loaded)
    np.testing.assert_allclose(traj, [[1, 1, -1], [2, 1, -2], [10, 1, -10]])
    assert diagnostics_history(loaded)["offdiag_energy"] == [0.0, 0.0, 0.0]
    assert load_predictor_history(tmp_path / "nothing") == ([], [])
    np.save(folder / "epoch_0011.npy", np.eye(2))
    with pytest.raises(UserError, match="different shapes"):
        load_predictor_history(tmp_path)


def test_load_predictor_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_predictor(tmp_path / "missing.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match="junk.npy"):
        load_predictor(tmp_path / "junk.npy")
    np.save(tmp_path / "rect.npy", np.zeros((2, 3)))
    with pytest.raises(UserError, match="square"):
        load_predictor(tmp_path / "rect.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="obj.npy"):
        load_predictor(tmp_path / "obj.npy")
