"""DINO's pieces (Caron et al. 2021): the self-distillation loss with the teacher's centring and
sharpening, the centre's update, and DINO's projection head. The training method that uses them
(student / EMA teacher over multi-crop views) is not assembled yet (issue 31): these parts are
checked against DINO's own ``DINOLoss`` and ``DINOHead`` (benchmarks/checkpoints/verify_dino_official.py)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from simxir import distributed
from simxir.errors import UserError
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
    s = F.log_softmax(student / student_temp, dim=-1).chunk(student.shape[0] // b)
    t = F.softmax((teacher - center) / teacher_temp, dim=-1).detach().chunk(n_global)
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
        raise UserError(f"dino teacher temperature: {warmup_epochs} warm-up epochs exceed the {epochs} epochs")
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


__all__ = ["DINOHead", "WeightNormLinear", "cosine_value", "dino_center", "dino_loss", "teacher_temperature"]
