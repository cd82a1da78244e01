"""Collapse monitors and the online linear probe's metrics.

* ``normalized_std``: std over the batch of l2-normalized embeddings, averaged over dimensions
  (SimSiam's monitor): about ``1/sqrt(d)`` for healthy, spread-out embeddings, 0 when collapsed.
* ``effective_rank``: Roy & Vetterli (2007): ``exp(H(p))`` with ``p = s / sum(s)`` the normalised
  singular values of the (uncentred) feature matrix; between 1 and ``min(n, d)``.
* ``spread``: mean over dimensions of the batch std of the raw embeddings the loss compares; the
  engine logs it every step and compares the last epoch's mean with the first step's (scale
  collapse: outputs shrinking towards a constant, e.g. zero, which ``normalized_std`` cannot see).
* ``is_collapsed``: the documented rule (see :class:`simxir.train.config.MonitorConfig`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of ``z / ||z||`` (rows); ``z`` is (n, d)."""
    zn = F.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean())


def spread(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of ``z`` (n, d), un-normalized."""
    return float(z.detach().float().std(dim=0).mean())


def effective_rank(x: torch.Tensor, eps: float = 1e-12) -> float:
    """Roy & Vetterli effective rank ``exp(-sum p_k log p_k)``, ``p_k = s_k / sum s`` of ``x`` (n, d).

    Non-finite features (a run blowing up between loss checks) give nan, which counts as collapsed.
    """
    if not bool(torch.isfinite(x).all()):
        return math.nan
    s = torch.linalg.svdvals(x.detach().double())
    total = s.sum()
    if not torch.isfinite(total) or total <= eps:
        return 1.0 if torch.isfinite(total) else math.nan
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the ``k`` largest logits, for each ``k``."""
    out = {}
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices
    hit = top == y[:, None]
    for k in ks:
        out[k] = int(hit[:, :min(k, kmax)].any(dim=1).sum())
    return out


def collapse_reasons(std: float, dim: int, erank: float, std_ratio: float, min_erank: float,
                     spread_ratio: float | None = None, min_spread_ratio: float = 0.0) -> list[str]:
    """Which rules say collapsed: ``"z_std"`` when ``std * sqrt(dim) < std_ratio``, ``"feat_erank"``
    when ``erank < min_erank``, ``"non-finite"`` for nan/inf monitors, and ``"z_spread"`` when a
    ``spread_ratio`` is given (scale-sensitive losses only) and is below ``min_spread_ratio``;
    empty when healthy."""
    reasons = []
    if not math.isfinite(std) or not math.isfinite(erank):
        reasons.append("non-finite")
    else:
        if std * math.sqrt(dim) < std_ratio:
            reasons.append("z_std")
        if erank < min_erank:
            reasons.append("feat_erank")
    if spread_ratio is not None and spread_ratio < min_spread_ratio:
        reasons.append("z_spread")
    return reasons


def collapse_label(metrics: dict) -> str:
    """``COLLAPSED (reasons)`` for an epoch's metrics that say collapsed ("COLLAPSED" without reasons)."""
    reasons = metrics.get("collapse_reasons")
    return f"COLLAPSED ({reasons})" if reasons else "COLLAPSED"


def is_collapsed(std: float, dim: int, erank: float, std_ratio: float, min_erank: float) -> bool:
    """Collapsed when ``std * sqrt(dim) < std_ratio`` or ``erank < min_erank`` (nan counts as collapsed)."""
    return bool(collapse_reasons(std, dim, erank, std_ratio, min_erank))
