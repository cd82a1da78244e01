"""The SimXIR loss (SimXIR paper, eq. 3.1 and its spherical form, eq. 4.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simxir_loss(online: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """mean_i ||f(a(x_i)) - f_{t-1}(a'(x_i))||_2^2 (eq. 3.1); the target side gets no gradient.

    ``kind="cosine"`` l2-normalises both sides first (the spherical case, eq. 4.2), which equals
    mean_i (2 - 2 cos(f_i, g_i)). Squared distances are summed over feature dimensions and
    averaged over the batch.
    """
    target = target.detach()
    if kind == "cosine":
        online = F.normalize(online, dim=1)
        target = F.normalize(target, dim=1)
    elif kind != "l2":
        raise ValueError(f"loss kind {kind!r}: expected 'l2' or 'cosine'")
    return (online - target).pow(2).sum(dim=1).mean()
