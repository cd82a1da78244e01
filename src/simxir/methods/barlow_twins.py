"""Barlow Twins (Zbontar et al., ICML 2021): cross-correlation of the two views driven to I."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from simxir.distributed import gather_with_grad
from simxir.errors import UserError
from simxir.methods.base import ADAMW_DEFAULTS, Method, full_precision
from simxir.methods.heads import mlp


@dataclass
class BarlowTwinsConfig:
    """Projector widths after the backbone (``[8192]*3`` is the ImageNet recipe)."""

    proj_sizes: list[int] = field(default_factory=lambda: [2048, 2048, 2048])
    lambd: float = 0.0051        # weight of the off-diagonal terms
    scale_loss: float = 1.0      # official code today: 1 (its first releases: 0.024; solo-learn: 0.025)


def standardize(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-dimension batch standardization, (z - mean) / sqrt(biased var + eps): BatchNorm1d
    without affine parameters in training mode."""
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps)


def barlow_twins_terms(z1: Tensor, z2: Tensor, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """(on-diagonal, off-diagonal) sums of Barlow Twins' eq. 1 on the (global) batch.

    C = std(z1)^T std(z2) / N with std the batch standardization above (the official code's
    ``BatchNorm1d(affine=False)``, synchronized across processes, then ``c / batch_size`` and an
    all-reduce: identical to computing it here on the gathered batch).
    on = sum_i (1 - C_ii)^2, off = sum_{i != j} C_ij^2.
    """
    n = z1.shape[0]
    c = standardize(z1, eps).T @ standardize(z2, eps) / n
    diag = torch.diagonal(c)
    on = (diag - 1).pow(2).sum()
    off = c.pow(2).sum() - diag.pow(2).sum()
    return on, off


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.0051, scale_loss: float = 1.0,
                      eps: float = 1e-5, with_terms: bool = False
                      ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """scale_loss * (on + lambd * off), eq. 1 of the paper with the official code's conventions.

    The current official code has no scale factor (1.0); its first releases multiplied by
    ``--scale-loss`` 1/32 (later 0.024) and solo-learn uses 0.025. The scale only matters for
    non-scale-invariant optimizers (SGD, AdamW); LARS-adapted weights do not see it. With
    ``with_terms`` also the two sums (for logging): ``(loss, (on, off))``.
    """
    on, off = barlow_twins_terms(z1, z2, eps)
    loss = scale_loss * (on + lambd * off)
    return (loss, (on, off)) if with_terms else loss


class BarlowTwins(Method):
    """Projector Linear-BN-ReLU ... Linear (bias-free, as the official code)."""

    name = "barlow_twins"
    config_cls = BarlowTwinsConfig
    train_defaults = ADAMW_DEFAULTS
    batch_statistics = "the cross-correlation of the batch-standardised embeddings"

    def __init__(self, backbone: nn.Module, cfg: BarlowTwinsConfig | None = None) -> None:
        cfg = cfg or BarlowTwinsConfig()
        super().__init__(backbone, cfg)
        if not cfg.proj_sizes:
            raise UserError("barlow_twins proj_sizes: expected a non-empty list of widths")
        self.projector = mlp([self.feature_dim, *cfg.proj_sizes], bias=False)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.pair(views)
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        with full_precision(z1.device):
            g1, g2 = gather_with_grad(z1.float()), gather_with_grad(z2.float())
            loss, (on, off) = barlow_twins_loss(g1, g2, self.cfg.lambd, self.cfg.scale_loss, with_terms=True)
        return self._outputs(loss, z1, z2, f1, on_diag=on, off_diag=off)
