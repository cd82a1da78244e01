"""BYOL (Grill et al., NeurIPS 2020): online network + predictor regress an EMA target network."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.errors import UserError
from simxir.methods.base import (
    ADAMW_DEFAULTS,
    Method,
    cosine_tau,
    ema_update_,
    full_precision,
    make_target,
)
from simxir.methods.heads import mlp


@dataclass
class BYOLConfig:
    """Defaults: CIFAR with a 512-d ResNet-18 (SimXIR paper, appendix C.2), plus the BYOL paper's
    projector BN (C.2's recipes turn it off)."""

    proj_hidden: int = 128
    proj_dim: int = 128
    pred_hidden: int = 512
    predictor: Literal["mlp", "linear"] = "mlp"   # "linear": one bias-free Linear(d, d)
    tau_base: float = 0.99                        # EMA decay at step 0, cosine-scheduled to 1
    proj_bn: bool = True                          # BN in the projector's hidden layer, as the BYOL
                                                  # paper's (SimXIR's C.2 has none: its recipes say so)


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """Normalized-l2 loss of BYOL's eq. 2: mean_i || p_i/|p_i| - z_i/|z_i| ||^2 = 2 - 2 cos.

    One direction only; the caller passes the target ``z`` computed without gradient and sums
    both directions (BYOL's L + L~, eq. 2-3, as the official code and solo-learn do: total in
    [0, 8]). Lightly's BYOL uses -cos averaged over the two directions instead; the two
    totals relate by ``ours = 4 + 4 * lightly`` and have the same minimisers.
    """
    return (2.0 - 2.0 * F.cosine_similarity(p, z, dim=-1)).mean()


class BYOL(Method):
    """Projector Linear-ReLU-Linear (Linear-BN-ReLU-Linear with ``proj_bn``), predictor
    Linear-BN-ReLU-Linear (or a linear map)."""

    name = "byol"
    config_cls = BYOLConfig
    train_defaults = ADAMW_DEFAULTS
    local_crops = True

    def __init__(self, backbone: nn.Module, cfg: BYOLConfig | None = None) -> None:
        cfg = cfg or BYOLConfig()
        super().__init__(backbone, cfg)
        if not 0.0 <= cfg.tau_base <= 1.0:
            raise UserError(f"byol tau_base: expected a number in [0, 1], got {cfg.tau_base}")
        self.projector = mlp([self.feature_dim, cfg.proj_hidden, cfg.proj_dim], hidden_bn=cfg.proj_bn)
        if cfg.predictor == "mlp":
            self.predictor: nn.Module = mlp([cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim])
        elif cfg.predictor == "linear":
            self.predictor = nn.Linear(cfg.proj_dim, cfg.proj_dim, bias=False)
        else:
            raise UserError(f"byol predictor: expected 'mlp' or 'linear', got {cfg.predictor!r}")
        self.target_backbone = make_target(backbone)
        self.target_projector = make_target(self.projector)
        self.tau = cfg.tau_base

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """Each target (global) view predicted from every other view: with local crops (multi-crop,
        solo-learn's pairs) the mean over those pairs, scaled to the two-view sum."""
        v1, v2 = views[0], views[1]
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(v1))
            t2 = self.target_projector(self.target_backbone(v2))
        with full_precision(p1.device):
            loss = byol_loss(p1.float(), t2.float()) + byol_loss(p2.float(), t1.float())
        if len(views) > 2:
            local = self.predictor(self.projector(self.backbone(torch.cat(list(views[2:])))))
            with full_precision(p1.device):
                terms = [byol_loss(p.float(), t.float()) for p in local.float().chunk(len(views) - 2)
                         for t in (t1, t2)]
                loss = (loss + torch.stack(terms).sum()) * 2 / (2 + len(terms))
        return self._outputs(loss, z1, z2, f1, tau=torch.full((), self.tau, device=loss.device))   # no H2D copy

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA of the target with tau = cosine_tau(tau_base, step, total_steps); step is 0-based."""
        self.tau = cosine_tau(self.cfg.tau_base, step, total_steps)
        ema_update_(self.target_backbone, self.backbone, self.tau)
        ema_update_(self.target_projector, self.projector, self.tau)

    def predictor_weight(self) -> Tensor | None:
        return self.predictor.weight if isinstance(self.predictor, nn.Linear) else None
