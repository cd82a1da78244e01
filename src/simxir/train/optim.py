"""Optimizers (SGD, AdamW, LARS) and parameter groups.

Bias and normalisation parameters (every parameter with ``ndim <= 1``) go to a group with no weight
decay and no LARS adaptation, as in BYOL and solo-learn. Every group carries ``base_lr`` (the lr at
schedule factor 1) so the schedule can scale all groups alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from simxir.errors import UserError
from simxir.train.config import OptimConfig


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al. 2017), as in solo-learn.

    For a parameter ``p`` with gradient ``g`` in a group with ``lars=True``::

        q = eta * ||p|| / (||g|| + wd * ||p|| + eps)     (only when ||p|| > 0 and ||g|| > 0)
        d = q * (g + wd * p)        [clip_lars_lr: q <- min(q / lr, 1)]
        buf = momentum * buf + d;  p <- p - lr * buf

    Groups with ``lars=False`` take a plain SGD step ``d = g + wd * p``.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 eta: float = 1e-3, eps: float = 1e-8, clip_lars_lr: bool = False,
                 nesterov: bool = False):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, eps=eps,
                        clip_lars_lr=clip_lars_lr, nesterov=nesterov, lars=True)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """One update of every group, as a few ``torch._foreach_*`` kernels over all its parameters
        (not a Python loop of small ops per parameter); no host synchronization."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            ps = [p for p in group["params"] if p.grad is not None]
            if not ps:
                continue
            gs = [p.grad for p in ps]
            wd, mom, lr = group["weight_decay"], group["momentum"], group["lr"]
            d = torch._foreach_add(gs, ps, alpha=wd) if wd != 0 else [g.clone() for g in gs]
            if group["lars"]:
                p_norm = torch.stack(torch._foreach_norm(ps))
                g_norm = torch.stack(torch._foreach_norm(gs))
                q = group["eta"] * p_norm / (g_norm + wd * p_norm + group["eps"])
                if group["clip_lars_lr"]:
                    q = torch.clamp(q / lr, max=1.0) if lr > 0 else torch.ones_like(q)
                q = torch.where((p_norm > 0) & (g_norm > 0), q, torch.ones_like(q))
                torch._foreach_mul_(d, list(q.to(d[0].dtype).unbind()))
            if mom != 0:
                bufs = []
                for p, di in zip(ps, d, strict=True):
                    state = self.state[p]
                    if "momentum_buffer" not in state:   # the first step: buf = d
                        state["momentum_buffer"] = torch.zeros_like(di)
                    bufs.append(state["momentum_buffer"])
                torch._foreach_mul_(bufs, mom)
                torch._foreach_add_(bufs, d)
                d = torch._foreach_add(d, bufs, alpha=mom) if group["nesterov"] else bufs
            torch._foreach_add_(ps, d, alpha=-lr)
        return loss


def split_decay(module: nn.Module, exclude_bias_norm: bool) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(decayed, excluded) trainable parameters: excluded are the ``ndim <= 1`` ones (bias, norms)."""
    decay, no_decay = [], []
    for _, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if exclude_bias_norm and p.ndim <= 1 else decay).append(p)
    return decay, no_decay


def build_optimizer(cfg: OptimConfig, model: nn.Module, lr: float,
                    extra_groups: list[dict] | None = None) -> torch.optim.Optimizer:
    """The optimizer for ``model`` at peak learning rate ``lr`` plus ``extra_groups``.

    Each extra group is a dict with ``params`` and optionally ``lr``/``weight_decay``/``name``;
    extra groups never get LARS adaptation (e.g. the online probe).
    """
    decay, no_decay = split_decay(model, cfg.exclude_bias_norm)
    groups: list[dict] = [
        {"name": "decay", "params": decay, "lr": lr, "base_lr": lr, "weight_decay": cfg.weight_decay,
         "lars": True},
    ]
    if no_decay:
        groups.append({"name": "no_decay", "params": no_decay, "lr": lr, "base_lr": lr,
                       "weight_decay": 0.0, "lars": False})
    for g in extra_groups or []:
        g = dict(g)
        g.setdefault("lr", lr)
        g.setdefault("weight_decay", 0.0)
        g["base_lr"] = g["lr"]
        g["lars"] = False
        groups.append(g)
    groups = [g for g in groups if len(list(g["params"])) > 0]
    if cfg.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum,
                                                     nesterov=cfg.nesterov)
    elif cfg.name == "adamw":
        if len(cfg.betas) != 2:
            raise UserError(f"optim.betas: expected two numbers, got {list(cfg.betas)}")
        opt = torch.optim.AdamW(groups, lr=lr, betas=(cfg.betas[0], cfg.betas[1]))
    elif cfg.name == "lars":
        opt = LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.eta, clip_lars_lr=cfg.clip_lars_lr,
                   nesterov=cfg.nesterov)
    else:
        raise UserError(f"optim.name: expected one of sgd, adamw, lars, got {cfg.name!r}")
    return opt
