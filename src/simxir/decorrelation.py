"""Feature decorrelation (bridging paper, Figure 1): ``||corr(F) - I||_F^2``.

``corr`` is the Pearson correlation matrix of the ``d`` feature dimensions of an ``n x d`` batch.
The value is 0 for perfectly decorrelated features and ``d * (d - 1)`` when every dimension is a
copy of one signal (dimensional collapse to rank one).

Zero-variance dimensions have no correlation. What the measure reports for them is a choice:

* ``zero_variance="nan"`` (default): the measure is undefined and ``nan`` is returned. A completely
  collapsed projection (every output identical) therefore logs ``nan``, never a flattering 0; the
  engine's collapse monitor (output std) says why.
* ``"drop"``: the constant dimensions are left out and the measure is taken over the rest
  (``nan`` only when no dimension varies). Use it to look at a partly dead representation.

A dimension counts as constant when its standard deviation is zero or at most ``rtol`` times the
absolute value of its mean (what rounding leaves of a constant column).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

from simxir.errors import UserError

ZeroVariance = Literal["nan", "drop"]


def _as_matrix(features: torch.Tensor | np.ndarray, name: str) -> torch.Tensor:
    x = torch.as_tensor(features) if isinstance(features, np.ndarray) else features
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{name}: expected a tensor or array of shape (n, d)")
    if x.ndim != 2:
        raise UserError(f"{name}: expected shape (n, d), got {tuple(x.shape)}")
    if x.shape[0] < 2 or x.shape[1] < 1:
        raise UserError(f"{name}: expected at least 2 samples and 1 dimension, got {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise UserError(f"{name}: expected real-valued features, got dtype {x.dtype}")
    return x


def _work_dtype(x: torch.Tensor) -> torch.dtype:
    # float64 for accuracy; MPS has no float64.
    return torch.float32 if x.device.type == "mps" else torch.float64


def _eps_of(x: torch.Tensor) -> float:
    return float(torch.finfo(x.dtype).eps) if x.is_floating_point() else float(torch.finfo(torch.float64).eps)


def _centred_columns(x: torch.Tensor, rtol: float | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred float64 columns, their std, and the mask of non-constant columns."""
    tol = max(10.0 * _eps_of(x), 1e-12) if rtol is None else rtol
    xf = x.detach().to(_work_dtype(x))
    mean = xf.mean(dim=0)
    xc = xf - mean
    var = xc.pow(2).sum(dim=0) / (xf.shape[0] - 1)
    if not bool(torch.isfinite(var).all()):  # a nan or inf anywhere in a column makes its variance nan
        raise UserError("features: contain nan or inf values")
    std = var.sqrt()
    # a constant column's spread is rounding noise, proportional to its magnitude (= |mean|)
    live = (std > tol * mean.abs()) & (std > 0)
    return xc, std, live


def correlation_matrix(features: torch.Tensor | np.ndarray, rtol: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlation of the columns of ``features`` (n x d), and the mask of varying columns.

    Returns ``(corr, live)``: ``corr`` is d x d (float64 on the input's device; rows/columns of
    constant dimensions are ``nan``), ``live`` a bool mask of the non-constant dimensions.
    """
    x = _as_matrix(features, "features")
    xc, std, live = _centred_columns(x, rtol)
    cov = xc.T @ xc / (xc.shape[0] - 1)
    safe = torch.where(live, std, torch.ones_like(std))
    corr = (cov / safe[:, None] / safe[None, :]).clamp_(-1.0, 1.0)
    if not bool(live.all()):
        dead = ~live
        corr[dead, :] = float("nan")
        corr[:, dead] = float("nan")
    return corr, live


def decorrelation(features: torch.Tensor | np.ndarray, zero_variance: ZeroVariance = "nan",
                  normalize: bool = False, rtol: float | None = None) -> float:
    """``||corr - I||_F^2`` of an ``n x d`` feature batch (paper Figure 1); lower = more decorrelated.

    ``normalize=True`` divides by ``d * (d - 1)`` (the rank-one maximum), giving the mean squared
    off-diagonal correlation in [0, 1], comparable across widths. ``zero_variance``: see the module
    docstring. ``rtol`` (default ``max(10 * eps of the input dtype, 1e-12)``) decides what counts as
    constant. Computed in float64 from the smaller Gram matrix (``||z^T z||_F = ||z z^T||_F`` for
    standardized columns ``z``), so ``n < d`` costs ``n^2 d``. Works on any device; returns a float.
    """
    if zero_variance not in ("nan", "drop"):
        raise UserError(f"zero_variance: expected 'nan' or 'drop', got {zero_variance!r}")
    x = _as_matrix(features, "features")
    xc, std, live = _centred_columns(x, rtol)
    if not bool(live.all()):
        if zero_variance == "nan" or not bool(live.any()):
            return math.nan
        xc, std = xc[:, live], std[live]
    n, d = xc.shape
    z = xc / (std * math.sqrt(n - 1))          # unit-norm columns: corr = z^T z
    # ||corr||_F^2 = ||z^T z||_F^2 = ||z z^T||_F^2: use the smaller Gram matrix (n x n when n < d)
    gram = z.T @ z if d <= n else z @ z.T
    diag = z.pow(2).sum(dim=0)                 # the diagonal of corr: 1 up to rounding
    value = float(gram.pow(2).sum() - diag.pow(2).sum() + (diag - 1).pow(2).sum())
    value = max(value, 0.0)
    if normalize:
        value = value / (d * (d - 1)) if d > 1 else 0.0
    return value
