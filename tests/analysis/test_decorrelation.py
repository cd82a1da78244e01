"""decorrelation(): agreement with the written-out formula, a population check, collapse cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simxir.analysis import correlation_matrix, decorrelation
from simxir.errors import UserError


def _pearson_by_hand(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    r = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            a = x[:, i] - x[:, i].mean()
            b = x[:, j] - x[:, j].mean()
            r[i, j] = (a * b).sum() / math.sqrt((a * a).sum() * (b * b).sum())
    return r


def _chosen_sigma() -> np.ndarray:
    # a correlation matrix with chosen entries (positive definite: checked below)
    r = np.array([[1.0, 0.6, -0.3, 0.0],
                  [0.6, 1.0, 0.2, 0.1],
                  [-0.3, 0.2, 1.0, 0.5],
                  [0.0, 0.1, 0.5, 1.0]])
    assert np.linalg.eigvalsh(r).min() > 0
    return r


def test_equals_formula_on_sample_correlation():
    rng = np.random.default_rng(0)
    sigma = _chosen_sigma() * np.outer([1.0, 3.0, 0.5, 10.0], [1.0, 3.0, 0.5, 10.0])
    x = rng.multivariate_normal([5.0, -2.0, 0.0, 100.0], sigma, size=300)
    r = _pearson_by_hand(x)
    expected = sum(r[i, j] ** 2 for i in range(4) for j in range(4) if i != j)
    assert decorrelation(x) == pytest.approx(expected, rel=1e-10)
    assert decorrelation(torch.tensor(x, dtype=torch.float32)) == pytest.approx(expected, rel=1e-5)
    assert decorrelation(x, normalize=True) == pytest.approx(expected / 12, rel=1e-10)


@pytest.mark.parametrize("n, d", [(6, 10), (40, 3), (7, 7)])
def test_fewer_samples_than_dims_and_matrix_agree(n, d):
    x = np.random.default_rng(n * d).standard_normal((n, d)) @ np.diag(np.arange(1.0, d + 1))
    r = _pearson_by_hand(x)
    expected = float(((r - np.eye(d)) ** 2).sum())
    assert decorrelation(x) == pytest.approx(expected, rel=1e-10)
    corr, live = correlation_matrix(x)
    assert bool(live.all())
    np.testing.assert_allclose(corr.numpy(), r, atol=1e-12)


def test_population_value_with_tolerance():
    rng = np.random.default_rng(1)
    r = _chosen_sigma()
    x = rng.multivariate_normal(np.zeros(4), r, size=200_000)
    population = float(((r - np.eye(4)) ** 2).sum())  # = 2 * (.36 + .09 + 0 + .04 + .01 + .25)
    assert population == pytest.approx(1.5)
    assert decorrelation(x) == pytest.approx(population, abs=0.02)


def test_invariant_to_scale_shift_and_permutation():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 6)) @ rng.standard_normal((6, 6))
    base = decorrelation(x)
    y = x[:, [3, 1, 5, 0, 2, 4]] * np.array([2.0, -0.1, 7.0, 1.0, 1e3, 0.5]) + 42.0
    assert decorrelation(y) == pytest.approx(base, rel=1e-9)


def test_independent_and_rank_one_extremes():
    x = np.eye(8)  # centred columns e_i - 1/8: dot -1/8, squared norm 7/8 -> corr -1/7
    rho = -1.0 / 7.0
    assert decorrelation(x) == pytest.approx(8 * 7 * rho ** 2, rel=1e-10)
    s = np.random.default_rng(3).standard_normal(50)
    rank1 = np.stack([s, -2 * s, 0.5 * s + 1, 3 * s], axis=1)
    assert decorrelation(rank1) == pytest.approx(4 * 3, rel=1e-10)
    assert decorrelation(rank1, normalize=True) == pytest.approx(1.0, rel=1e-10)


def test_zero_variance_dimensions():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    x[:, 2] = 3.25  # dead dimension
    assert math.isnan(decorrelation(x))
    live = np.delete(x, 2, axis=1)
    assert decorrelation(x, zero_variance="drop") == pytest.approx(decorrelation(live), rel=1e-9)
    collapsed = np.full((64, 5), 0.7, dtype=np.float32)  # complete collapse: undefined, not 0
    assert math.isnan(decorrelation(collapsed))
    assert math.isnan(decorrelation(collapsed, zero_variance="drop"))
    assert math.isnan(decorrelation(np.zeros((10, 3))))
    corr, live = correlation_matrix(x)
    assert live.tolist() == [True, True, False, True, True]
    assert bool(torch.isnan(corr[2]).all()) and bool(torch.isnan(corr[:, 2]).all())


def test_small_but_real_variance_is_not_dead():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((100, 3)) * np.array([1.0, 1e-9, 1.0])
    assert not math.isnan(decorrelation(x))


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((1, 3)), np.zeros((2, 2, 2))])
def test_bad_shapes(bad):
    with pytest.raises(UserError, match="features"):
        decorrelation(bad)


def test_bad_values_and_option():
    x = np.random.default_rng(6).standard_normal((10, 3))
    x[0, 0] = np.nan
    with pytest.raises(UserError, match="nan"):
        decorrelation(x)
    with pytest.raises(UserError, match="zero_variance"):
        decorrelation(np.eye(3), zero_variance="zero")  # type: ignore[arg-type]
