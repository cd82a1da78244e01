"""The "bridge" method (Liu, Suganuma & Okatani, NeurIPS 2022): a linear predictor W_p and an
explicit covariance-maintaining term replace BYOL/SimSiam's stop-gradient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from simxir import distributed
from simxir.errors import UserError
from simxir.methods.base import ADAMW_DEFAULTS, Method, full_precision
from simxir.methods.heads import mlp


@dataclass
class BridgeConfig:
    # d=128 below the batch size keeps each batch covariance full rank at CPU-scale batches; the
    # paper's 2048^3 and 8192^3 projectors are in recipes/pretrain/bridging-s5/
    proj_sizes: list[int] = field(default_factory=lambda: [512, 512, 128])
    predictor: Literal["linear", "identity"] = "linear"   # "identity": the paper's I-PRED
    standardize: bool = True       # BatchNorm1d(affine=False) on each view's projector output
    stop_gradient: bool = False    # ablation: detach the target side, as BYOL/SimSiam
    c_inv: float = 25.0            # the paper's 2048^3 row (Tables 2/4; docs/paper-settings.md)
    c_cov: float = 1.0
    partitions: int = 1            # k of eq. 19 per process (W processes: k*W in all); 1 is eq. 17
    inv_per_sample: bool = False   # True: sum over dims, mean over samples (eq. 17 literally)
    # the two directions (1 -> 2, 2 -> 1): "mean" (eq. 16's 1/2) or "sum" (the official code's total,
    # which its LARS runs optimised: the bridging ImageNet recipes; LARS is not scale-invariant for
    # the bias/norm parameters it does not adapt, nor for the balance with weight decay)
    directions: Literal["mean", "sum"] = "mean"


def bridge_terms(z1: Tensor, z2: Tensor, w: Tensor, partitions: int = 1,
                 inv_per_sample: bool = False, wtw: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(invariance, covariance) of ONE direction (view 1 predicts view 2), eqs. 17/19.

    Rows of ``z1``, ``z2`` (n, d) are samples (the paper's F = [f_1..f_n]/sqrt(n) transposed);
    ``w`` (d, d) is W_p acting on column vectors, so the prediction of sample i is W_p z1_i.
      invariance = mean over the n*d entries of (W_p z1_i - z2_i)^2
                   (``inv_per_sample``: sum over d, mean over n = ||W_p F1 - F2||_F^2 of eq. 17,
                   d times the default);
      covariance = sum_{i=1..k} d * mean_{d x d}((W_p^T W_p - W_p (Z1_i^T Z1_i / n_i) W_p^T)^2)
                 = sum_i ||.||_F^2 / d, Z1_i the i-th of k equal partitions of the rows of z1
                   (``torch.tensor_split``: sizes differ by at most one when k does not divide n).
    Computed as W_p C_i W_p^T = P_i^T P_i / n_i with P = z1 W_p^T the predictions (n_i d^2 flops
    instead of d^3); ``wtw``: W_p^T W_p when the caller already has it.
    """
    n, d = z1.shape
    if not 1 <= partitions <= n:
        raise UserError(f"bridge partitions: expected 1..batch size ({n}), got {partitions}")
    pred = z1 @ w.T
    sq = (pred - z2).pow(2)
    inv = sq.sum(dim=1).mean() if inv_per_sample else sq.mean()
    wtw = w.T @ w if wtw is None else wtw
    cov = z1.new_zeros(())
    for part in torch.tensor_split(pred, partitions, dim=0):
        cov = cov + d * (wtw - part.T @ part / part.shape[0]).pow(2).mean()
    return inv, cov


def bridge_loss(z1: Tensor, z2: Tensor, w: Tensor, c_inv: float = 25.0, c_cov: float = 1.0,
                partitions: int = 1, stop_gradient: bool = False, inv_per_sample: bool = False,
                cov_scale: float = 1.0, with_terms: bool = False, directions: str = "mean"
                ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Symmetrized loss over the two directions (1 -> 2 and 2 -> 1), each c_inv * invariance +
    c_cov * covariance (``bridge_terms``): their average (``directions="mean"``, the 1/2 of the
    paper's symmetric eq. 16) or their sum (``"sum"``, the official code's total, twice the mean).
    With ``stop_gradient`` the predicted side's target (z2 in 1 -> 2, z1 in 2 -> 1) is detached;
    the covariance term always uses the predicting side.

    ``cov_scale`` multiplies the covariance term: the method passes the number of processes, since
    eq. 19 sums it over partitions (each process's batch is one) while DDP averages gradients.
    With ``with_terms`` also the two terms, averaged over directions (for logging): ``(loss, (inv, cov))``."""
    if directions not in ("mean", "sum"):
        raise UserError(f"bridge directions: expected mean or sum, got {directions!r}")
    t1, t2 = (z1.detach(), z2.detach()) if stop_gradient else (z1, z2)
    wtw = w.T @ w
    inv_a, cov_a = bridge_terms(z1, t2, w, partitions, inv_per_sample, wtw)
    inv_b, cov_b = bridge_terms(z2, t1, w, partitions, inv_per_sample, wtw)
    inv, cov = (inv_a + inv_b) / 2, (cov_a + cov_b) / 2
    loss = c_inv * inv + c_cov * cov * cov_scale
    if directions == "sum":
        loss = 2 * loss
    return (loss, (inv, cov)) if with_terms else loss


class Bridge(Method):
    """Bias-free projector Linear-BN-ReLU ... Linear, optional standardization, linear W_p."""

    name = "bridge"
    config_cls = BridgeConfig
    train_defaults = ADAMW_DEFAULTS
    batch_statistics = "the standardisation and the covariance term"

    def __init__(self, backbone: nn.Module, cfg: BridgeConfig | None = None) -> None:
        cfg = cfg or BridgeConfig()
        super().__init__(backbone, cfg)
        if not cfg.proj_sizes:
            raise UserError("bridge proj_sizes: expected a non-empty list of widths")
        if cfg.partitions < 1:
            raise UserError(f"bridge partitions: expected a positive integer, got {cfg.partitions}")
        d = cfg.proj_sizes[-1]
        self.projector = mlp([self.feature_dim, *cfg.proj_sizes], bias=False)
        # Standardization is a BatchNorm1d so that the engine's SyncBatchNorm conversion makes
        # its statistics global under DDP, as in the paper ("including the standardization layer").
        self.standardizer: nn.Module = (nn.BatchNorm1d(d, affine=False) if cfg.standardize
                                        else nn.Identity())
        if cfg.predictor == "linear":
            self.predictor: nn.Linear | None = nn.Linear(d, d, bias=False)
        elif cfg.predictor == "identity":
            self.predictor = None
        else:
            raise UserError(f"bridge predictor: expected 'linear' or 'identity', got {cfg.predictor!r}")
        self.proj_dim = d
        # without STD the l2 terms shrink with the outputs (the paper's "obvious collapsing case")
        self.scale_sensitive = not cfg.standardize

    def _w(self, like: Tensor) -> Tensor:
        if self.predictor is None:
            return torch.eye(self.proj_dim, device=like.device, dtype=like.dtype)
        return self.predictor.weight.to(like.dtype)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.pair(views)
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        s1, s2 = self.standardizer(z1), self.standardizer(z2)
        cfg = self.cfg
        with full_precision(z1.device):
            s1, s2 = s1.float(), s2.float()
            # cov_scale: k partitions on one process == k/W on each of W processes (see bridge_loss)
            loss, (inv, cov) = bridge_loss(s1, s2, self._w(s1), cfg.c_inv, cfg.c_cov, cfg.partitions,
                                           cfg.stop_gradient, cfg.inv_per_sample,
                                           cov_scale=distributed.world_size(), with_terms=True,
                                           directions=cfg.directions)
        # z1/z2 of the contract are what the loss compares: the standardized outputs (raw with STD off)
        return self._outputs(loss, s1, s2, f1, inv_loss=inv, cov_loss=cov)

    def predictor_weight(self) -> Tensor | None:
        """W_p; the fixed identity for I-PRED (``predictor="identity"``)."""
        if self.predictor is None:
            return torch.eye(self.proj_dim, device=self.projector[0].weight.device)
        return self.predictor.weight
