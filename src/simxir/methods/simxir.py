"""SimXIR self-supervised fine-tuning as a Method the training engine runs (SimXIR, Algorithm 1).

For rounds t = 1..T the target f_{t-1} is a frozen copy of the online encoder taken at the start of
the round (no gradient, never updated inside it); each step minimises
mean_i ||f(a(x_i)) - f_{t-1}(a'(x_i))||^2 over the online encoder f. At the round's end the online
encoder becomes the next target. There is no projector, no predictor and no negative.

Batch norm in the target is an explicit choice (``target_bn``):

- ``"batch"`` (default): the target normalises with the statistics of the batch it sees, like the
  online network does in training mode, so both sides of the loss are computed the same way. Its
  running statistics stay frozen (BN momentum 0), so the target really is the round-start copy.
- ``"running"``: the target runs in eval mode and normalises with the running statistics it
  had at the start of the round.

A backbone without BatchNorm (a ViT) has no such choice: ``target_bn`` does not apply, and the run
says so in its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.config import from_dict
from simxir.errors import UserError
from simxir.methods.base import Method, make_target
from simxir.progress import log


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


@dataclass
class SimXIRConfig:
    """SimXIR's options (``method.KEY=VALUE`` on the command line)."""

    loss: Literal["l2", "cosine"] = "l2"                 # eq. 3.1, or the spherical eq. 4.2
    variant: Literal["standard", "raw-anchor"] = "standard"  # raw-anchor: eq. 3.2 (variant dagger)
    symmetric: bool = False                              # also f(a') -> f_{t-1}(a), averaged
    target_bn: Literal["batch", "running"] = "batch"
    epochs_per_round: int = 0                            # 0: one round for the whole run (T = 1)
    steps_per_round: int = 0                             # >0: rounds of K steps instead of epochs


class SimXIR(Method):
    """Online encoder vs. a frozen copy of itself from the previous round; l2 (or cosine) loss."""

    name = "simxir"
    config_cls = SimXIRConfig
    fine_tunes = True
    local_crops = True
    # The SimXIR paper's settings: one round (T = 1) of 20 epochs, SGD lr 5e-4 (not scaled by batch
    # size), weight decay 1e-6, batch 512, constant lr; augmentation and backbone from the data and
    # the encoder (``auto``); ``data`` has no default (the user's images).
    train_defaults: ClassVar[dict[str, Any]] = {
        "data": "", "backbone": "auto", "augment": "auto", "epochs": 20, "batch_size": 512,
        "optim": {"name": "sgd", "lr": 5e-4, "scale_lr": False, "weight_decay": 1e-6, "momentum": 0.9},
        "schedule": {"name": "constant", "warmup_epochs": 0.0},
        "monitor": {"save_predictor": False},
    }

    def __init__(self, backbone: nn.Module, cfg: SimXIRConfig | dict[str, Any] | None = None) -> None:
        if cfg is None:
            cfg = SimXIRConfig()
        elif isinstance(cfg, dict):
            cfg = from_dict(SimXIRConfig, cfg)
        if cfg.variant == "raw-anchor" and cfg.symmetric:
            raise UserError("method.symmetric: the raw-anchor variant is one-sided; use "
                            "variant=standard for a symmetric loss")
        if cfg.epochs_per_round < 0 or cfg.steps_per_round < 0:
            raise UserError("method.epochs_per_round / method.steps_per_round: expected >= 0")
        super().__init__(backbone, cfg)
        self.target = make_target(backbone)
        bns = [m for m in self.target.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.target_bn_applies = bool(bns)
        if not bns:
            log(f"method.target_bn={cfg.target_bn} does not apply: the backbone has no BatchNorm "
                f"({getattr(backbone, 'arch', type(backbone).__name__)}); the target is the round-start copy")
        if cfg.target_bn == "batch":
            for m in bns:
                m.momentum = 0.0  # batch statistics in forward, running statistics untouched
        self.target.train(cfg.target_bn != "running")
        self.rounds_done = 0

    def train(self, mode: bool = True) -> SimXIR:
        super().train(mode)
        if self.cfg.target_bn == "running":
            self.target.eval()
        return self

    @torch.no_grad()
    def refresh_target(self) -> None:
        """End of a round: the online encoder becomes the next frozen target."""
        self.target.load_state_dict(self.backbone.state_dict())
        self.rounds_done += 1

    def on_epoch_start(self, epoch: int) -> None:
        per = self.cfg.epochs_per_round
        if self.cfg.steps_per_round == 0 and per > 0 and epoch > 0 and epoch % per == 0:
            self.refresh_target()

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        k = self.cfg.steps_per_round
        if k > 0 and (step + 1) % k == 0 and step + 1 < total_steps:
            self.refresh_target()

    def _side(self, online_in: Tensor, target_in: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        f = self.backbone(online_in)
        with torch.no_grad():
            g = self.target(target_in)
        return simxir_loss(f.float(), g.float(), self.cfg.loss), f, g

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        """``views[0]`` goes through the online encoder, ``views[1]`` through the frozen target (for
        the raw-anchor variant ``views[0]`` is the un-augmented image: :meth:`raw_views`). Local
        crops (multi-crop) are further online views, each against the target of both global views;
        the loss is then the mean over all (online, target) pairs."""
        v1, v2 = views[0], views[1]
        loss, f1, g2 = self._side(v1, v2)
        pairs = 1
        if self.cfg.symmetric:
            loss_b, _, g1 = self._side(v2, v1)
            loss = 0.5 * (loss + loss_b)
            pairs = 2
        if len(views) > 2:
            if not self.cfg.symmetric:
                with torch.no_grad():
                    g1 = self.target(v1)
            local = self.backbone(torch.cat(list(views[2:]))).float()
            terms = [simxir_loss(f, g.float(), self.cfg.loss) for f in local.chunk(len(views) - 2) for g in (g1, g2)]
            loss = (loss * pairs + torch.stack(terms).sum()) / (pairs + len(terms))
        with torch.no_grad():
            cos = torch.nn.functional.cosine_similarity(f1.float(), g2.float(), dim=1).mean()
        return self._outputs(loss, f1, g2, f1, cos_to_target=cos)

    def use_views(self, n_global: int, n_local: int) -> None:
        if n_local and self.cfg.variant == "raw-anchor":
            raise UserError("multicrop.local_crops: the raw-anchor variant compares the un-augmented image with "
                            "one view; use method.variant=standard for local crops")
        super().use_views(n_global, n_local)

    def raw_views(self) -> frozenset[int]:
        """The raw-anchor variant (eq. 3.2): the online side sees the un-augmented image x."""
        return frozenset({0}) if self.cfg.variant == "raw-anchor" else frozenset()

    def project(self, x: Tensor) -> Tensor:
        """SimXIR has no projector: the representation is the encoder's output."""
        return self.backbone(x)
