"""SimCLR (Chen et al., ICML 2020): NT-Xent over the global batch of 2N views."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.distributed import gather_with_grad, rank, world_size
from simxir.methods.base import Method, full_precision
from simxir.methods.heads import mlp


@dataclass
class SimCLRConfig:
    proj_hidden: int = 512
    proj_dim: int = 128
    temperature: float = 0.2


def simclr_masks(n_local: int, n_global: int, offset: int,
                 device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """(positive, negative) boolean masks of shape (2 n_local, 2 n_global).

    Rows: local anchors ordered [z1; z2]; columns: gathered candidates ordered
    [z1 of all processes; z2 of all processes]; this process's samples start at ``offset``.
    Each row has exactly one positive (the other view of the same image) and 2 n_global - 2
    negatives (everything but itself and its positive).
    """
    i = torch.arange(n_local, device=device)
    self_col = torch.cat([offset + i, n_global + offset + i])
    pos_col = torch.cat([n_global + offset + i, offset + i])
    rows = torch.arange(2 * n_local, device=device)
    pos = torch.zeros(2 * n_local, 2 * n_global, dtype=torch.bool, device=device)
    pos[rows, pos_col] = True
    neg = torch.ones_like(pos)
    neg[rows, pos_col] = False
    neg[rows, self_col] = False
    return pos, neg


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.2,
                 z1_all: Tensor | None = None, z2_all: Tensor | None = None,
                 offset: int = 0) -> Tensor:
    """NT-Xent (SimCLR eq. 1), averaged over the 2n local anchors.

    l(i) = -log exp(s(i, pos)/t) / sum_{k != i} exp(s(i, k)/t), s = cosine similarity, the sum
    running over the other 2N - 1 views of the global batch (``z1_all``/``z2_all``: the gathered
    projections, defaulting to the local ones; ``offset``: index of this process's first sample
    in them). The mean over processes of the local losses is the full-batch loss.
    """
    z1_all = z1 if z1_all is None else z1_all
    z2_all = z2 if z2_all is None else z2_all
    anchors = F.normalize(torch.cat([z1, z2]), dim=-1)
    cands = F.normalize(torch.cat([z1_all, z2_all]), dim=-1)
    logits = anchors @ cands.T / temperature
    pos, neg = simclr_masks(z1.shape[0], z1_all.shape[0], offset, device=z1.device)
    logits = logits.masked_fill(~(pos | neg), float("-inf"))
    target = pos.float().argmax(dim=1)
    return F.cross_entropy(logits, target)


class SimCLR(Method):
    """Projector Linear-BN-ReLU-Linear-BN."""

    name = "simclr"
    config_cls = SimCLRConfig
    batch_statistics = "NT-Xent's in-batch negatives"

    def __init__(self, backbone: nn.Module, cfg: SimCLRConfig | None = None) -> None:
        cfg = cfg or SimCLRConfig()
        super().__init__(backbone, cfg)
        self.projector = mlp([self.feature_dim, cfg.proj_hidden, cfg.proj_dim], last_bn=True)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        v1, v2 = self.pair(views)
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        with full_precision(z1.device):
            a1, a2 = z1.float(), z2.float()
            g1, g2 = gather_with_grad(a1), gather_with_grad(a2)
            offset = rank() * a1.shape[0] if world_size() > 1 else 0
            loss = nt_xent_loss(a1, a2, self.cfg.temperature, g1, g2, offset)
        return self._outputs(loss, z1, z2, f1)
