"""VICReg (Bardes, Ponce & LeCun, ICLR 2022): variance, invariance, covariance terms."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.distributed import gather_with_grad
from simxir.errors import UserError
from simxir.methods.base import ADAMW_DEFAULTS, Method, full_precision
from simxir.methods.heads import mlp


@dataclass
class VICRegConfig:
    proj_sizes: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    sim_weight: float = 25.0     # lambda (invariance)
    var_weight: float = 25.0     # mu (variance)
    cov_weight: float = 1.0      # nu (covariance)
    eps: float = 1e-4


def vicreg_terms(z1: Tensor, z2: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """(invariance, variance, covariance) of VICReg's eqs. 1-5, official-code conventions.

    invariance = mean over all N*d entries of (z1 - z2)^2 (``F.mse_loss``);
    variance   = [mean_j relu(1 - sqrt(Var z1_j + eps)) + same for z2] / 2 -- the official code
                 HALVES the sum of the two views' hinge terms (facebookresearch/vicreg#8), which
                 the paper's eq. 6 does not show;
    covariance = sum_{i != j} C(z1)_ij^2 / d + same for z2 (NOT halved), C = centred z^T z/(N-1).
    Var is the unbiased batch variance. Statistics are over the batch given (the gathered
    global batch in the method, as the official code's FullGatherLayer).
    """
    n, d = z1.shape
    inv = F.mse_loss(z1, z2)
    std1 = torch.sqrt(z1.var(dim=0) + eps)
    std2 = torch.sqrt(z2.var(dim=0) + eps)
    var = F.relu(1 - std1).mean() / 2 + F.relu(1 - std2).mean() / 2
    c1 = z1 - z1.mean(dim=0)
    c2 = z2 - z2.mean(dim=0)
    cov1 = c1.T @ c1 / (n - 1)
    cov2 = c2.T @ c2 / (n - 1)
    off1 = cov1.pow(2).sum() - torch.diagonal(cov1).pow(2).sum()
    off2 = cov2.pow(2).sum() - torch.diagonal(cov2).pow(2).sum()
    cov = off1 / d + off2 / d
    return inv, var, cov


def vicreg_loss(z1: Tensor, z2: Tensor, sim_weight: float = 25.0, var_weight: float = 25.0,
                cov_weight: float = 1.0, eps: float = 1e-4, with_terms: bool = False
                ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
    """sim_weight * invariance + var_weight * variance + cov_weight * covariance; with
    ``with_terms`` also the three terms (for logging): ``(loss, (inv, var, cov))``."""
    inv, var, cov = vicreg_terms(z1, z2, eps)
    loss = sim_weight * inv + var_weight * var + cov_weight * cov
    return (loss, (inv, var, cov)) if with_terms else loss


class VICReg(Method):
    """Projector (expander) Linear-BN-ReLU ... Linear."""

    name = "vicreg"
    config_cls = VICRegConfig
    train_defaults = ADAMW_DEFAULTS
    batch_statistics = "the variance and covariance terms"
    scale_sensitive = True   # unnormalized invariance term (the variance hinge is what stops shrinking)

    def __init__(self, backbone: nn.Module, cfg: VICRegConfig | None = None) -> None:
        cfg = cfg or VICRegConfig()
        super().__init__(backbone, cfg)
        if not cfg.proj_sizes:
            raise UserError("vicreg proj_sizes: expected a non-empty list of widths")
        self.projector = mlp([self.feature_dim, *cfg.proj_sizes])

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.pair(views)
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        cfg = self.cfg
        with full_precision(z1.device):
            g1, g2 = gather_with_grad(z1.float()), gather_with_grad(z2.float())
            loss, (inv, var, cov) = vicreg_loss(g1, g2, cfg.sim_weight, cfg.var_weight, cfg.cov_weight,
                                                cfg.eps, with_terms=True)
        return self._outputs(loss, z1, z2, f1, inv_loss=inv, var_loss=var, cov_loss=cov)
