"""One optimizer step over its micro-batches (gradient accumulation, autocast, the nan/inf guard)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from simxir import distributed
from simxir.train import monitors

_SKIP_KEYS = {"loss", "probe_loss", "probe_logits", "z1", "z2", "feats1"}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batches: Iterable[tuple[list[torch.Tensor], torch.Tensor | None]], n_micro: int,
               amp_dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None = None,
               before_step: Callable[[], None] | None = None) -> tuple[float, dict[str, torch.Tensor]]:
    """One optimizer step over ``n_micro`` micro-batches ``(views, labels)`` (gradient accumulation;
    DDP syncs on the last).

    Returns ``(loss, logs)``: the method loss averaged over micro-batches and processes (nan/inf
    when diverged, in which case the optimizer does NOT step), and local logs as 0-d tensors on the
    device (other 0-d outputs, ``z_spread``, probe top-1/top-5 counts), for the caller to read when
    it logs. Reading the loss is the step's one host-device synchronization (the nan/inf guard; a
    GradScaler's inf check adds its own). ``before_step`` runs between backward and the optimizer
    step (the gradients unscaled when a GradScaler is used): clipping, method hooks.
    """
    optimizer.zero_grad(set_to_none=True)
    loss_sum: torch.Tensor | None = None
    logs: dict[str, torch.Tensor] = {}

    def add(key: str, v: torch.Tensor) -> None:
        logs[key] = v if key not in logs else logs[key] + v

    for i, (views, y) in enumerate(batches):
        sync = nullcontext() if (i == n_micro - 1 or not isinstance(model, DDP)) else model.no_sync()
        with sync:
            with torch.autocast(device_type=views[0].device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                out = model(views, y)
            loss = out["loss"].float()
            total = (loss + out.get("probe_loss", 0.0)) / n_micro
            (scaler.scale(total) if scaler is not None else total).backward()
        d = loss.detach()
        loss_sum = d if loss_sum is None else loss_sum + d
        for k, v in out.items():
            if k not in _SKIP_KEYS and isinstance(v, torch.Tensor) and v.ndim == 0:
                add(k, v.detach().float() / n_micro)
        if isinstance(out.get("z1"), torch.Tensor) and out["z1"].shape[0] > 1:
            add("z_spread", monitors.spread(out["z1"]) / n_micro)
        if "probe_logits" in out and y is not None:
            hits = monitors.topk_hits(out["probe_logits"], y, (1, 5))
            add("probe_hits1", hits[0])
            add("probe_hits5", hits[1])
            add("probe_count", torch.full((), y.shape[0], dtype=hits.dtype, device=hits.device))
    assert loss_sum is not None, "train_step: no micro-batches"
    value = float(distributed.all_reduce_mean(loss_sum / n_micro))   # the one synchronization
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return value, logs
    if before_step is not None:
        if scaler is not None:
            scaler.unscale_(optimizer)
        before_step()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return value, logs
