"""Collapse monitors and the online linear probe's metrics.

* ``normalized_std``: std over the batch of l2-normalized embeddings, averaged over dimensions
  (SimSiam's monitor): about ``1/sqrt(d)`` for healthy, spread-out embeddings, 0 when collapsed.
* ``effective_rank``: Roy & Vetterli (2007): ``exp(H(p))`` with ``p = s / sum(s)`` the normalised
  singular values of the (uncentred) feature matrix; between 1 and ``min(n, d)``.
* ``spread``: mean over dimensions of the batch std of the raw embeddings the loss compares; the
  engine logs it every step and compares the last epoch's mean with the first step's (scale
  collapse: outputs shrinking towards a constant, e.g. zero, which ``normalized_std`` cannot see).
* ``collapse_reasons``: the documented rule (see :class:`simxir.train.config.MonitorConfig`).
* ``evaluate_monitors``: all of them and the online probe's test accuracy, at an epoch's end.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from simxir.decorrelation import decorrelation
from simxir.errors import UserError
from simxir.train.config import TrainConfig


def normalized_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the batch std of ``z / ||z||`` (rows); ``z`` is (n, d)."""
    zn = F.normalize(z.detach().float(), dim=1)
    return float(zn.std(dim=0).mean())


def spread(z: torch.Tensor) -> torch.Tensor:
    """Mean over dimensions of the batch std of ``z`` (n, d), un-normalized (a 0-d tensor on z's
    device, so that the training step does not wait for it)."""
    return z.detach().float().std(dim=0).mean()


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


def topk_hits(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """(len(ks),) int64 on the logits' device: the number of rows whose label is among the ``k``
    largest logits, for each ``k`` (no host synchronization)."""
    kmax = min(max(ks), logits.shape[1])
    hit = logits.topk(kmax, dim=1).indices == y[:, None]
    return torch.stack([hit[:, :min(k, kmax)].any(dim=1).sum() for k in ks])


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, int]:
    """Number of rows whose label is among the ``k`` largest logits, for each ``k``."""
    return dict(zip(ks, topk_hits(logits, y, ks).tolist(), strict=True))


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


@torch.no_grad()
def evaluate_monitors(trainable: Any, augment: Any, test_x: torch.Tensor, test_y: torch.Tensor,
                      cfg: TrainConfig, amp_dtype: torch.dtype | None, device: torch.device,
                      channels_last: bool, spread_ratio: float | None = None) -> dict[str, Any]:
    """Online-probe test accuracy, collapse monitors and decorrelation on un-augmented test images.

    ``spread_ratio``: the training embeddings' ``z_spread`` over its first-step value, for the
    scale-collapse rule (None when the method's loss is scale-free or there is no reference)."""
    method = trainable.method
    was_training = trainable.training
    trainable.eval()
    feats, zs = [], []
    n_eval = min(cfg.monitor.eval_size, test_x.shape[0])
    bs = cfg.monitor.eval_batch_size
    project = getattr(method, "project", None)
    ac = torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None)
    for s in range(0, test_x.shape[0], bs):
        x = augment.eval(test_x[s:s + bs].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ac:
            feats.append(method.backbone(x).float())
            if project is not None and s < n_eval:
                zs.append(project(x).float())
    f = torch.cat(feats)
    res: dict[str, Any] = {}
    if trainable.probe is not None and test_y.numel():
        logits = trainable.probe(f)
        hit = topk_correct(logits, test_y.to(device), (1, 5))
        res["probe_test_top1"] = hit[1] / test_y.shape[0]
        res["probe_test_top5"] = hit[5] / test_y.shape[0]
    fe = f[:n_eval]
    res["feat_std"] = normalized_std(fe)
    res["feat_erank"] = effective_rank(fe)
    z = torch.cat(zs)[:n_eval] if zs else fe
    res["z_std"] = normalized_std(z)
    res["z_std_healthy"] = 1.0 / math.sqrt(z.shape[1])
    res["decorrelation"] = _decorrelation(z)
    res["z_dim"] = int(z.shape[1])       # what normalises it: ||corr - I||_F^2 / (d (d - 1))
    reasons = collapse_reasons(res["z_std"], z.shape[1], res["feat_erank"],
                                        cfg.monitor.collapse_std_ratio, cfg.monitor.collapse_erank,
                                        spread_ratio, cfg.monitor.collapse_spread_ratio)
    res["collapsed"] = bool(reasons)
    res["collapse_reasons"] = "+".join(reasons)   # which rules fired ("" when healthy)
    trainable.train(was_training)
    return res


def _decorrelation(z: torch.Tensor) -> float:
    """``||corr(Z) - I||_F^2`` (nan for zero-variance dims or non-finite input)."""
    try:
        return decorrelation(z)
    except UserError:
        return math.nan
