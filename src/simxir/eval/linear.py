"""Linear probe: a linear classifier trained on frozen features held in memory (no DataLoader)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from simxir.errors import UserError
from simxir.progress import progress


@dataclass
class LinearProbeConfig:
    """Linear-probe recipe: SGD with momentum and a per-step cosine learning-rate schedule."""

    epochs: int = 100
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 256          # >= number of train samples means full-batch
    standardize: bool = True       # z-score features with the TRAIN mean/std before the classifier
    seed: int = 0


def _validate(cfg: LinearProbeConfig) -> None:
    if cfg.epochs < 1:
        raise UserError(f"--linear-epochs: expected a positive integer, got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UserError(f"linear batch_size: expected a positive integer, got {cfg.batch_size}")
    if not (cfg.lr > 0):
        raise UserError(f"linear lr: expected > 0, got {cfg.lr}")
    if cfg.weight_decay < 0:
        raise UserError(f"linear weight_decay: expected >= 0, got {cfg.weight_decay}")


#: below this many multiply-adds per step (batch x dim x classes) the CPU probe runs on one thread:
#: its ops are too small to gain from threads, and with busy cores OpenMP barriers made 2 threads
#: 20x slower than 1 in our measurement (10k x 512 features, 10 classes).
SINGLE_THREAD_BELOW = 50_000_000


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """Temporarily use ``n`` intra-op threads (no-op for None)."""
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def topk_hit(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: is the label among the ``k`` (at most the class count) largest logits? (M,) bool."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == y.unsqueeze(1)).any(1)


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Percent of rows whose label is among the ``k`` largest logits."""
    if y.numel() == 0:
        return 0.0
    return 100.0 * float(topk_hit(logits, y, k).sum()) / y.numel()


def linear_probe(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    cfg: LinearProbeConfig | None = None,
    num_classes: int | None = None,
    show_progress: bool = True,
    outcomes: bool = False,
) -> dict[str, Any]:
    """Train ``nn.Linear(d, C)`` on ``train_f`` with cross-entropy; return ``{"top1", "top5"}`` in percent
    on ``test_f`` (top-5 means top-min(5, C)). Deterministic given ``cfg.seed``; runs on the
    features' device. ``outcomes``: also ``"right": {"top1": (M,) bool, "top5": (M,) bool}`` (CPU)."""
    logits, yte = _probe_logits(train_f, train_y, test_f, test_y, cfg, num_classes, show_progress)
    out: dict[str, Any] = {"top1": topk_accuracy(logits, yte, 1), "top5": topk_accuracy(logits, yte, 5)}
    if outcomes:
        out["right"] = {"top1": topk_hit(logits, yte, 1).cpu(), "top5": topk_hit(logits, yte, 5).cpu()}
    return out


def linear_probe_predictions(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                             test_y: torch.Tensor, cfg: LinearProbeConfig | None = None,
                             num_classes: int | None = None, show_progress: bool = True) -> torch.Tensor:
    """The same probe as :func:`linear_probe`; returns its top-1 class per test row (M,)."""
    return linear_probe_logits(train_f, train_y, test_f, test_y, cfg, num_classes, show_progress).argmax(dim=1)


def linear_probe_logits(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                        test_y: torch.Tensor, cfg: LinearProbeConfig | None = None,
                        num_classes: int | None = None, show_progress: bool = True) -> torch.Tensor:
    """The same probe as :func:`linear_probe`; returns its test logits (M, C) on the CPU."""
    logits, _ = _probe_logits(train_f, train_y, test_f, test_y, cfg, num_classes, show_progress)
    return logits.cpu()


def _probe_logits(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                  cfg: LinearProbeConfig | None, num_classes: int | None, show_progress: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = cfg or LinearProbeConfig()
    _validate(cfg)
    if train_f.ndim != 2 or test_f.ndim != 2 or train_f.shape[1] != test_f.shape[1]:
        raise UserError(f"features: expected (N, d) train and test arrays with equal d, got "
                        f"{tuple(train_f.shape)} and {tuple(test_f.shape)}")
    if train_y.shape != (train_f.shape[0],) or test_y.shape != (test_f.shape[0],):
        raise UserError("labels: expected one label per feature row")
    if train_f.shape[0] == 0:
        raise UserError("train features: expected at least one sample, got 0")
    dev = train_f.device
    xtr = train_f.detach().float()
    xte = test_f.detach().to(dev).float()
    ytr = train_y.detach().to(dev).long()
    yte = test_y.detach().to(dev).long()
    if num_classes is None:
        num_classes = int(max(int(ytr.max()), int(yte.max()) if yte.numel() else 0)) + 1
    if cfg.standardize:
        mean = xtr.mean(0, keepdim=True)
        std = xtr.std(0, unbiased=False, keepdim=True).clamp_min(1e-6)
        xtr = (xtr - mean) / std
        xte = (xte - mean) / std

    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    d = xtr.shape[1]
    bound = 1.0 / math.sqrt(d)   # nn.Linear's default init, drawn from our own generator
    weight = (torch.rand(num_classes, d, generator=gen) * 2 - 1).mul_(bound).to(dev).requires_grad_()
    bias = (torch.rand(num_classes, generator=gen) * 2 - 1).mul_(bound).to(dev).requires_grad_()

    n = xtr.shape[0]
    bs = min(cfg.batch_size, n)
    small = dev.type == "cpu" and bs * d * num_classes < SINGLE_THREAD_BELOW
    with _cpu_threads(1 if small else None):
        _train(xtr, ytr, weight, bias, cfg, bs, gen, show_progress)
    with torch.no_grad():
        return F.linear(xte, weight, bias), yte


def sgd_momentum_step(params: list[torch.Tensor], bufs: list[torch.Tensor | None], lr: float, momentum: float,
                      weight_decay: float) -> None:
    """``torch.optim.SGD``'s update (dampening 0, no Nesterov), written out: it avoids the several
    seconds that torch.optim's first step spends importing torch._dynamo."""
    with torch.no_grad():
        for i, p in enumerate(params):
            g = p.grad if weight_decay == 0 else p.grad.add(p, alpha=weight_decay)
            if momentum != 0:
                if bufs[i] is None:
                    bufs[i] = g.detach().clone()
                else:
                    bufs[i].mul_(momentum).add_(g)
                g = bufs[i]
            p.add_(g, alpha=-lr)
            p.grad = None


def _train(xtr: torch.Tensor, ytr: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
           cfg: LinearProbeConfig, bs: int, gen: torch.Generator, show_progress: bool) -> None:
    """SGD epochs over shuffled minibatches with a per-step cosine learning rate."""
    n, dev = xtr.shape[0], xtr.device
    params = [weight, bias]
    bufs: list[torch.Tensor | None] = [None, None]
    total = cfg.epochs * math.ceil(n / bs)
    step = 0
    for _ in progress(range(cfg.epochs), desc="linear probe", total=cfg.epochs,
                      disable=None if show_progress else True):
        perm = torch.randperm(n, generator=gen).to(dev) if bs < n else None
        for s in range(0, n, bs):
            lr = 0.5 * cfg.lr * (1.0 + math.cos(math.pi * step / total))
            if perm is None:
                xb, yb = xtr, ytr
            else:
                idx = perm[s:s + bs]
                xb, yb = xtr[idx], ytr[idx]
            loss = F.cross_entropy(F.linear(xb, weight, bias), yb)
            loss.backward()
            sgd_momentum_step(params, bufs, lr, cfg.momentum, cfg.weight_decay)
            step += 1
