"""SimSiam (Chen & He, CVPR 2021): a predictor and stop-gradient, no momentum encoder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.methods.base import ADAMW_DEFAULTS, Method, full_precision
from simxir.methods.heads import mlp


@dataclass
class SimSiamConfig:
    """Defaults: CIFAR with a 512-d ResNet-18 (SimXIR paper, appendix C.2)."""

    proj_hidden: int = 512
    proj_dim: int = 128
    pred_hidden: int = 512


def simsiam_loss(p: Tensor, z: Tensor) -> Tensor:
    """Negative cosine similarity D(p, z) = -mean_i cos(p_i, z_i) (SimSiam eq. 1).

    One direction; the caller detaches ``z`` (stop-gradient) and averages both directions,
    L = D(p1, sg(z2))/2 + D(p2, sg(z1))/2 (eq. 2, as the official code and solo-learn), so the
    total lies in [-1, 1].
    """
    return -F.cosine_similarity(p, z, dim=-1).mean()


class SimSiam(Method):
    """Projector 3 x (Linear-BN)[-ReLU] ending in BN; predictor Linear-BN-ReLU-Linear."""

    name = "simsiam"
    config_cls = SimSiamConfig
    train_defaults = ADAMW_DEFAULTS
    local_crops = True

    def __init__(self, backbone: nn.Module, cfg: SimSiamConfig | None = None) -> None:
        cfg = cfg or SimSiamConfig()
        super().__init__(backbone, cfg)
        # The official code's last BN is affine=False; same here.
        self.projector = mlp([self.feature_dim, cfg.proj_hidden, cfg.proj_hidden, cfg.proj_dim],
                             last_bn=True, last_bn_affine=False)
        self.predictor = mlp([cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim])

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """Symmetric negative cosine between the two views; local crops (multi-crop) add the
        prediction of each global view's projection from each local crop (mean over all pairs)."""
        v1, v2 = views[0], views[1]
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with full_precision(p1.device):
            loss = (simsiam_loss(p1.float(), z2.detach().float())
                    + simsiam_loss(p2.float(), z1.detach().float())) / 2
        if len(views) > 2:
            local = self.predictor(self.projector(self.backbone(torch.cat(list(views[2:])))))
            with full_precision(p1.device):
                terms = [simsiam_loss(p.float(), z.detach().float()) for p in local.chunk(len(views) - 2)
                         for z in (z1, z2)]
                loss = (loss * 2 + torch.stack(terms).sum()) / (2 + len(terms))
        return self._outputs(loss, z1, z2, f1)
