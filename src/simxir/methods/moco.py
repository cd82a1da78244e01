"""MoCo v2 (Chen et al., 2020): InfoNCE against a momentum encoder's keys and a queue of keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.distributed import gather_no_grad
from simxir.errors import UserError
from simxir.methods.base import (
    Method,
    cosine_tau,
    ema_update_,
    full_precision,
    make_target,
)
from simxir.methods.heads import mlp


@dataclass
class MoCoConfig:
    """Defaults: CIFAR with a 512-d ResNet-18 (SimXIR paper, appendix C.2)."""

    proj_hidden: int = 128
    proj_dim: int = 128
    temperature: float = 0.2
    queue_size: int = 2048
    ema: float = 0.999                                   # momentum of the key encoder
    ema_schedule: Literal["constant", "cosine"] = "constant"  # cosine: ema -> 1 as in BYOL
    symmetric: bool = True       # both directions averaged, one queue per view (solo-learn)


def infonce_loss(q: Tensor, k: Tensor, queue: Tensor, temperature: float = 0.2) -> Tensor:
    """InfoNCE of MoCo (eq. 1): -log exp(q.k+/t) / (exp(q.k+/t) + sum_j exp(q.n_j/t)).

    ``q`` (N, d) queries, ``k`` (N, d) their positive keys, ``queue`` (K, d) negative keys; all
    are l2-normalized here. Mean over the N queries.
    """
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    queue = F.normalize(queue, dim=-1)
    pos = (q * k).sum(dim=-1, keepdim=True)
    neg = q @ queue.T
    logits = torch.cat([pos, neg], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


class MoCo(Method):
    """Projector Linear-ReLU-Linear; momentum copy of backbone + projector; key queue(s).

    With ``symmetric`` (solo-learn's MoCo v2+): loss = [L(q1, k2, queue_2) + L(q2, k1, queue_1)]/2
    and the keys of view v enter queue v. Without: MoCo v2's one direction L(q1, k2, queue_2).
    Keys are gathered from all processes before they are enqueued. No shuffle-BN (the
    projector has no BN; as solo-learn). Buffers: ``queue`` (2, K, d), ``queue_ptr``.
    """

    name = "moco"
    config_cls = MoCoConfig
    queue: Tensor
    queue_ptr: Tensor

    def __init__(self, backbone: nn.Module, cfg: MoCoConfig | None = None) -> None:
        cfg = cfg or MoCoConfig()
        super().__init__(backbone, cfg)
        if cfg.queue_size <= 0:
            raise UserError(f"moco queue_size: expected a positive integer, got {cfg.queue_size}")
        if not 0.0 <= cfg.ema <= 1.0:
            raise UserError(f"moco ema: expected a number in [0, 1], got {cfg.ema}")
        self.projector = mlp([self.feature_dim, cfg.proj_hidden, cfg.proj_dim], hidden_bn=False)
        self.momentum_backbone = make_target(backbone)
        self.momentum_projector = make_target(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(2, cfg.queue_size, cfg.proj_dim), dim=-1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._ptr: int | None = None   # queue_ptr on the host, read once: no device sync per step
        self.register_load_state_dict_post_hook(lambda module, keys: setattr(module, "_ptr", None))
        self.tau = cfg.ema

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write ``keys`` (2, B, d) at the pointer (FIFO, wrapping around); move the pointer."""
        size = self.queue.shape[1]
        b = keys.shape[1]
        if b >= size:  # more keys than room: keep the newest ones
            self.queue.copy_(keys[:, b - size:].to(self.queue.dtype))
            self.queue_ptr.zero_()
            self._ptr = 0
            return
        if self._ptr is None:   # after construction or a checkpoint load
            self._ptr = int(self.queue_ptr)
        ptr = self._ptr
        idx = (ptr + torch.arange(b, device=self.queue.device)) % size
        self.queue[:, idx] = keys.to(self.queue.dtype)
        self._ptr = (ptr + b) % size
        self.queue_ptr.fill_(self._ptr)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.pair(views)
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        with torch.no_grad():
            k1 = F.normalize(self.momentum_projector(self.momentum_backbone(v1)).float(), dim=-1)
            k2 = F.normalize(self.momentum_projector(self.momentum_backbone(v2)).float(), dim=-1)
        queue = self.queue.clone().detach()
        t = self.cfg.temperature
        with full_precision(z1.device):
            if self.cfg.symmetric:
                loss = (infonce_loss(z1.float(), k2, queue[1], t)
                        + infonce_loss(z2.float(), k1, queue[0], t)) / 2
            else:
                loss = infonce_loss(z1.float(), k2, queue[1], t)
        if self.training:
            self.enqueue(torch.stack([gather_no_grad(k1), gather_no_grad(k2)]))
        return self._outputs(loss, z1, z2, f1, tau=torch.full((), self.tau, device=loss.device))   # no H2D copy

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA of the key encoder: constant ``ema`` or cosine-scheduled to 1 (step 0-based)."""
        if self.cfg.ema_schedule == "cosine":
            self.tau = cosine_tau(self.cfg.ema, step, total_steps)
        else:
            self.tau = self.cfg.ema
        ema_update_(self.momentum_backbone, self.backbone, self.tau)
        ema_update_(self.momentum_projector, self.projector, self.tau)
