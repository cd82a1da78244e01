"""DINO (Caron et al. 2021): self-distillation with no labels. A student (backbone + DINO head) on
every crop predicts the centred, sharpened softmax of an EMA teacher on the global crops.

The pieces are checked against DINO's own ``DINOLoss`` and ``DINOHead``
(benchmarks/checkpoints/verify_dino_official.py); the method follows main_dino.py: multi-crop
forward grouped by resolution (``MultiCropWrapper``), the teacher on the global crops only, the
centre's momentum update after each loss, the teacher temperature's warm-up by epoch, the teacher
momentum's cosine to 1 per step, the last layer's gradient cancelled in the first
``freeze_last_layer`` epochs. Weight-decay schedule, per-parameter clipping and the lr warm-up are
the engine's (``optim.weight_decay_end``, ``optim.clip_grad`` / ``clip_mode``, ``schedule``)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from simxir import distributed
from simxir.errors import UserError
from simxir.io import load_checkpoint
from simxir.methods.base import Method, ema_update_, full_precision, make_target
from simxir.schedules import cosine_value


def dino_loss(student: Tensor, teacher: Tensor, center: Tensor, student_temp: float, teacher_temp: float,
              n_global: int) -> Tensor:
    """DINO's cross-entropy H(P_t(global i), P_s(crop v)) averaged over every pair with v != i.

    DINO's layout: ``student`` (n_crops x B, K) holds every crop's logits concatenated along the
    batch (the ``n_global`` global crops first), ``teacher`` (n_global x B, K) the teacher's logits of
    the global crops. The teacher is centred (``center`` (1, K)), sharpened by ``teacher_temp`` and
    gets no gradient; the student is divided by ``student_temp``. Pairs: each of the ``n_global``
    teacher crops against every student crop but its own, each term a mean over the batch; the
    loss is their mean.
    """
    if n_global < 1 or teacher.shape[0] % n_global:
        raise UserError(f"dino loss: {teacher.shape[0]} teacher rows are not {n_global} global crops of one batch")
    b = teacher.shape[0] // n_global
    if student.shape[0] % b or student.shape[0] // b < n_global:
        raise UserError(f"dino loss: {student.shape[0]} student rows are not whole crops of batch {b} "
                        f"(at least the {n_global} global ones)")
    if not (student_temp > 0 and teacher_temp > 0):
        raise UserError(f"dino loss: temperatures must be > 0, got student {student_temp}, teacher {teacher_temp}")
    return _cross_entropy(student, teacher_probs(teacher, center, teacher_temp), student_temp, n_global)


def teacher_probs(teacher: Tensor, center: Tensor, teacher_temp: float) -> Tensor:
    """The teacher's centred, sharpened softmax (no gradient)."""
    return F.softmax((teacher - center) / teacher_temp, dim=-1).detach()


def _cross_entropy(student: Tensor, probs: Tensor, student_temp: float, n_global: int) -> Tensor:
    """:func:`dino_loss` from the teacher's probabilities ``probs`` (n_global x B, K)."""
    b = probs.shape[0] // n_global
    s = F.log_softmax(student / student_temp, dim=-1).chunk(student.shape[0] // b)
    t = probs.chunk(n_global)
    total, terms = student.new_zeros(()), 0
    for i, q in enumerate(t):
        for v, log_p in enumerate(s):
            if v != i:
                total = total + torch.sum(-q * log_p, dim=-1).mean()
                terms += 1
    return total / terms


@torch.no_grad()
def dino_center(teacher: Tensor, center: Tensor, momentum: float) -> Tensor:
    """The new centre: ``momentum * center + (1 - momentum) * mean of teacher`` over every row of
    every process (DINO's ``update_center``)."""
    batch = teacher.sum(dim=0, keepdim=True)
    rows = teacher.shape[0]
    if distributed.world_size() > 1:
        dist.all_reduce(batch)
        rows *= distributed.world_size()
    return center * momentum + batch / rows * (1 - momentum)


def teacher_temperature(epoch: int, epochs: int, warmup_temp: float, temp: float, warmup_epochs: int) -> float:
    """DINO's teacher temperature: linear from ``warmup_temp`` to ``temp`` over ``warmup_epochs``
    (``np.linspace``'s endpoints: ``temp`` reached at epoch ``warmup_epochs - 1``), then ``temp``."""
    if warmup_epochs > epochs:
        raise UserError(f"method.warmup_teacher_temp_epochs: {warmup_epochs} warm-up epochs exceed the run's "
                        f"{epochs} epochs; expected at most {epochs}")
    if epoch >= warmup_epochs:
        return temp
    if warmup_epochs == 1:
        return warmup_temp
    return warmup_temp + (temp - warmup_temp) * epoch / (warmup_epochs - 1)


class WeightNormLinear(nn.Module):
    """``nn.utils.weight_norm(nn.Linear(in, out, bias=False))`` as DINO builds its last layer, with
    the same parameters and state_dict keys (``weight_g`` (out, 1), ``weight_v`` (out, in)):
    weight = g * v / ||v|| row by row."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        v = nn.Linear(in_dim, out_dim, bias=False).weight.detach()
        self.weight_v = nn.Parameter(v.clone())
        self.weight_g = nn.Parameter(v.norm(dim=1, keepdim=True))

    @property
    def weight(self) -> Tensor:
        return self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class DINOHead(nn.Module):
    """DINO's head: an MLP (``nlayers`` Linear layers, GELU, optional BN) to ``bottleneck_dim``, l2
    normalisation, then a weight-normalised bias-free linear layer to ``out_dim`` whose norm is fixed
    at 1 (``norm_last_layer``). Same state_dict as DINO's ``DINOHead``: its checkpoints load strictly."""

    def __init__(self, in_dim: int, out_dim: int, use_bn: bool = False, norm_last_layer: bool = True,
                 nlayers: int = 3, hidden_dim: int = 2048, bottleneck_dim: int = 256) -> None:
        super().__init__()
        nlayers = max(nlayers, 1)
        if nlayers == 1:
            self.mlp: nn.Module = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim)]
            for i in range(nlayers - 1):
                if use_bn:
                    layers.append(nn.BatchNorm1d(hidden_dim))
                layers.append(nn.GELU())
                layers.append(nn.Linear(hidden_dim, bottleneck_dim if i == nlayers - 2 else hidden_dim))
            self.mlp = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.last_layer = WeightNormLinear(bottleneck_dim, out_dim)
        self.last_layer.weight_g.data.fill_(1)
        self.last_layer.weight_g.requires_grad_(not norm_last_layer)

    def forward(self, x: Tensor) -> Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


@dataclass
class DINOConfig:
    """DINO's options (main_dino.py's defaults; ``method.KEY=VALUE``)."""

    out_dim: int = 65536                 # prototypes K of the last layer
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    use_bn_in_head: bool = False
    norm_last_layer: bool = True         # weight norm fixed at 1 (False: learnable; more stable for ViT-S only)
    momentum_teacher: float = 0.996      # cosine to 1 over the run, per step
    student_temp: float = 0.1
    teacher_temp: float = 0.04           # after the warm-up (0.07 for long runs)
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    center_momentum: float = 0.9
    freeze_last_layer: int = 1           # epochs in which the last layer gets no update
    init: str = ""                       # DINO's checkpoint.pth (main_dino.py's or simxir's): start from its
                                         # student, teacher and centre


def _by_resolution(views: Sequence[Tensor]) -> list[Tensor]:
    """Consecutive views of one side concatenated (DINO's ``MultiCropWrapper`` groups)."""
    groups: list[list[Tensor]] = []
    for v in views:
        if groups and groups[-1][0].shape[-1] == v.shape[-1]:
            groups[-1].append(v)
        else:
            groups.append([v])
    return [torch.cat(g) for g in groups]


class DINO(Method):
    """Student backbone + DINO head on every crop; EMA teacher (backbone + head) on the global crops."""

    name = "dino"
    config_cls = DINOConfig
    global_crops = None          # any number >= 1 (DINO: 2)
    local_crops = True
    batch_statistics = "the teacher centre's update, one per batch"
    # main_dino.py's optimisation beneath any recipe: AdamW lr 5e-4 x batch / 256, a cosine to 1e-3
    # of the peak (its min_lr 1e-6 at batch 512), weight decay 0.04 -> 0.4, per-parameter clipping
    # at 3. A run without a recipe is CPU-sized: 2 global + 4 local crops, 4096 prototypes and BN in
    # the head (on digits without it the head's output collapsed to uniform, loss ln 4096, kNN -1.4
    # against the random-init encoder; with it +2.2); DINO's own (8 local crops, 65536, no BN, a
    # 10-epoch warm-up) are in its recipes
    train_defaults: ClassVar[dict[str, Any]] = {
        "multicrop": {"global_crops": 2, "local_crops": 4},
        "optim": {"name": "adamw", "lr": 5e-4, "weight_decay": 0.04, "weight_decay_end": 0.4,
                  "clip_grad": 3.0, "clip_mode": "per_param"},
        "schedule": {"name": "cosine", "warmup_epochs": 0.0, "final_lr_ratio": 0.001},
        "method": {"out_dim": 4096, "use_bn_in_head": True},
    }

    def __init__(self, backbone: nn.Module, cfg: DINOConfig | None = None) -> None:
        cfg = cfg or DINOConfig()
        super().__init__(backbone, cfg)
        for key in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            if not getattr(cfg, key) > 0:
                raise UserError(f"method.{key}: expected a temperature > 0, got {getattr(cfg, key)}")
        for key in ("momentum_teacher", "center_momentum"):
            if not 0.0 <= getattr(cfg, key) <= 1.0:
                raise UserError(f"method.{key}: expected a number in [0, 1], got {getattr(cfg, key)}")
        if cfg.freeze_last_layer < 0 or cfg.warmup_teacher_temp_epochs < 0:
            raise UserError("method.freeze_last_layer / method.warmup_teacher_temp_epochs: expected >= 0")
        self.head = DINOHead(self.feature_dim, cfg.out_dim, use_bn=cfg.use_bn_in_head,
                             norm_last_layer=cfg.norm_last_layer, hidden_dim=cfg.hidden_dim,
                             bottleneck_dim=cfg.bottleneck_dim)
        self.teacher_backbone = make_target(backbone)
        for m in self.teacher_backbone.modules():   # DINO's teacher has no stochastic depth
            if hasattr(m, "drop_prob"):
                m.drop_prob = 0.0
        self.teacher_head = make_target(self.head)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))
        self.epoch = 0
        self.epochs = max(1, cfg.warmup_teacher_temp_epochs)   # the run's, once the engine says (use_epochs)
        self.momentum = cfg.momentum_teacher
        if cfg.init:
            with torch.serialization.safe_globals([argparse.Namespace]):   # main_dino.py saves its args
                load_dino_checkpoint(self, load_checkpoint(cfg.init), cfg.init)

    def teacher_temp(self) -> float:
        c = self.cfg
        return teacher_temperature(self.epoch, self.epochs, c.warmup_teacher_temp, c.teacher_temp,
                                   c.warmup_teacher_temp_epochs)

    def use_epochs(self, epochs: int) -> None:
        """DINO's schedule (:func:`teacher_temperature`) refuses a warm-up longer than the run, before training."""
        self.epochs = epochs
        self.teacher_temp()

    def _embed(self, head: DINOHead, feats: Tensor) -> tuple[Tensor, Tensor]:
        e = F.normalize(head.mlp(feats), dim=-1, p=2)
        return e, head.last_layer(e)

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:
        ng = self.n_global
        feats = torch.cat([self.backbone(x) for x in _by_resolution(views)])
        emb, student = self._embed(self.head, feats)
        with torch.no_grad():
            teacher = self.teacher_head(torch.cat([self.teacher_backbone(x) for x in _by_resolution(views[:ng])]))
        t_temp = self.teacher_temp()
        with full_precision(feats.device):
            teacher = teacher.float()
            q = teacher_probs(teacher, self.center, t_temp)    # dino_loss's, computed once for the entropy too
            loss = _cross_entropy(student.float(), q, self.cfg.student_temp, ng)
            with torch.no_grad():
                entropy = -(q * torch.log(q.clamp_min(1e-12))).sum(dim=-1).mean()
        if self.training:
            self.center.copy_(dino_center(teacher, self.center, self.cfg.center_momentum))
        b = views[0].shape[0]
        return self._outputs(loss, emb[:b], emb[b:2 * b] if ng > 1 else emb[:b], feats[:b],
                             teacher_entropy=entropy, teacher_temp=torch.full((), t_temp, device=loss.device),
                             momentum=torch.full((), self.momentum, device=loss.device))

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """DINO's ``cancel_gradients_last_layer``: no update of the last layer in the first epochs."""
        if self.epoch < self.cfg.freeze_last_layer:
            for p in self.head.last_layer.parameters():
                p.grad = None

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """EMA of the teacher (backbone and head) with momentum on DINO's cosine to 1 (step 0-based)."""
        self.momentum = cosine_value(step, total_steps, self.cfg.momentum_teacher, 1.0)
        ema_update_(self.teacher_backbone, self.backbone, self.momentum)
        ema_update_(self.teacher_head, self.head, self.momentum)

    def project(self, x: Tensor) -> Tensor:
        """The head's l2-normalised bottleneck embedding (before the prototypes)."""
        return self._embed(self.head, self.backbone(x))[0]

    def run_outputs(self) -> dict[str, Any]:
        """Files the run leaves beside its encoder: DINO's own ``checkpoint.pth`` layout."""
        return {"dino_checkpoint.pth": dino_checkpoint(self, self.epoch + 1)}


def _cpu(sd: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {prefix + k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def dino_checkpoint(method: DINO, epoch: int) -> dict[str, Any]:
    """``method`` in main_dino.py's ``checkpoint.pth`` layout: ``student`` (DDP-wrapped:
    ``module.backbone.*``, ``module.head.*``), ``teacher`` (``backbone.*`` / ``head.*``, under
    ``module.`` when the backbone has BatchNorm, as DINO wraps it in DDP then), ``dino_loss``
    (``center``) and ``epoch`` (epochs done); no optimizer (simxir's groups are not DINO's), which
    DINO's ``restart_from_checkpoint`` skips. The backbone's names are DINO's (torchvision's ResNet,
    DINO's ViT: simxir's share them)."""
    bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in method.backbone.modules())
    t = "module." if bn else ""
    student = {**_cpu(method.backbone.state_dict(), "module.backbone."),
               **_cpu(method.head.state_dict(), "module.head.")}
    teacher = {**_cpu(method.teacher_backbone.state_dict(), f"{t}backbone."),
               **_cpu(method.teacher_head.state_dict(), f"{t}head.")}
    return {"student": student, "teacher": teacher, "epoch": int(epoch),
            "dino_loss": {"center": method.center.detach().to("cpu").clone()}}


def _part(sd: Any, part: str) -> dict[str, Tensor]:
    out = {}
    for k, v in (sd.items() if isinstance(sd, dict) else ()):
        k = k.removeprefix("module.")
        if k.startswith(part + "."):
            out[k[len(part) + 1:]] = v
    return out


def load_dino_checkpoint(method: DINO, obj: Any, where: str = "checkpoint") -> None:
    """Student, teacher and centre of a ``checkpoint.pth`` in DINO's layout (main_dino.py's, or
    :func:`dino_checkpoint`'s) into ``method``, strictly; a UserError naming what does not fit."""
    if not isinstance(obj, dict) or not all(isinstance(obj.get(k), dict) for k in ("student", "teacher")):
        raise UserError(f"{where}: not a DINO checkpoint.pth (expected 'student' and 'teacher' state dicts)")
    for name, module, sd, part in (("student backbone", method.backbone, obj["student"], "backbone"),
                                   ("student head", method.head, obj["student"], "head"),
                                   ("teacher backbone", method.teacher_backbone, obj["teacher"], "backbone"),
                                   ("teacher head", method.teacher_head, obj["teacher"], "head")):
        try:
            module.load_state_dict(_part(sd, part), strict=True)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise UserError(f"{where}: its {name} does not fit this run's ({first}); choose the backbone and the "
                            f"head sizes (method.out_dim, hidden_dim, bottleneck_dim, use_bn_in_head) it was "
                            f"trained with") from None
    center = (obj.get("dino_loss") or {}).get("center")
    if isinstance(center, Tensor) and center.shape == method.center.shape:
        method.center.copy_(center)
    elif center is not None:
        raise UserError(f"{where}: its centre has shape {tuple(center.shape)}, this run's {tuple(method.center.shape)}")


__all__ = ["DINO", "DINOConfig", "DINOHead", "WeightNormLinear", "cosine_value", "dino_center", "dino_checkpoint",
           "dino_loss", "load_dino_checkpoint", "teacher_probs", "teacher_temperature"]
