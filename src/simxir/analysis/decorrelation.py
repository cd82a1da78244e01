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


def correlation_matrix(features: torch.Tensor | np.ndarray, rtol: float | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pearson correlation of the columns of ``features`` (n x d), and the mask of varying columns.

    Returns ``(corr, live)``: ``corr`` is d x d (float64 on the input's device; rows/columns of
    constant dimensions are ``nan``), ``live`` a bool mask of the non-constant dimensions.
    """
    x = _as_matrix(features, "features")
    tol = max(10.0 * _eps_of(x), 1e-12) if rtol is None else rtol
    xf = x.detach().to(_work_dtype(x))
    mean = xf.mean(dim=0)
    xc = xf - mean
    cov = xc.T @ xc / (xf.shape[0] - 1)
    var = cov.diagonal()
    if not bool(torch.isfinite(var).all()):  # a nan or inf anywhere in a column makes its variance nan
        raise UserError("features: contain nan or inf values")
    std = var.clamp_min(0).sqrt()
    # a constant column's spread is rounding noise, proportional to its magnitude (= |mean|)
    live = (std > tol * mean.abs()) & (std > 0)
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
constant.
    Works on any device; the result is a Python float.
    """
    if zero_variance not in ("nan", "drop"):
        raise UserError(f"zero_variance: expected 'nan' or 'drop', got {zero_variance!r}")
    corr, live = correlation_matrix(features, rtol=rtol)
    if not bool(live.all()):
        if zero_variance == "nan" or not bool(live.any()):
            return math.nan
        corr = corr[live][:, live]
    d = corr.shape[0]
    eye = torch.eye(d, dtype=corr.dtype, device=corr.device)
    value = float((corr - eye).pow(2).sum())
    if normalize:
        value = value / (d * (d - 1)) if d > 1 else 0.0
    return value
