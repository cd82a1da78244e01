"""The papers' linear-evaluation protocol (``--linear-protocol augmented``).

Frozen backbone in eval mode; a linear classifier (BatchNorm1d without affine in front, as
SimSiam's and MoCo v3's ``main_lincls.py``; switchable) trained on RandomResizedCrop + flip views of
the training images, new crops every epoch; SGD or LARS with a per-step cosine schedule; top-1/top-5
on the evaluation transform of the test images. Distributed like training (each process its slice
of the global batch, the classifier under DDP, SyncBatchNorm), resumable from an epoch checkpoint,
a progress bar per epoch. Recipes in ``recipes/linear/``: SimSiam (LARS, lr 0.1 x batch/256, batch
4096, 90 epochs) and the bridging paper / SimXIR (SGD momentum 0.9, lr 0.3, weight decay 1e-6,
batch 256, 100 epochs).

``fast`` (``simxir.eval.linear``: a probe on precomputed, standardized, un-augmented features)
stays the default on small data; results say which protocol produced them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from simxir.augment import Augment, ViewSpec
from simxir.config import deep_update, from_dict, read_recipe, to_dict
from simxir.eval.features import feature_autocast, model_device, split_features
from simxir.eval.linear import topk_hit
from simxir.io import atomic_save, load_checkpoint
from simxir.progress import log, progress
from simxir.recipes import find_recipe
from simxir.train.config import OptimConfig, ScheduleConfig, TrainConfig
from simxir.train.monitors import topk_hits
from simxir.train.optim import build_optimizer
from simxir.train.plan import PROBE_STREAM, epoch_seed, plan_run
from simxir.train.schedule import apply_lr, lr_factor
from simxir.train.source import make_source
from simxir.train.syncbn import convert_sync_batchnorm

PROTOCOLS = ("fast", "augmented")
CHECKPOINT = "linear-protocol.pt"


@dataclass
class ProtocolConfig:
    """Defaults: the bridging paper's / SimXIR's protocol (SGD, lr 0.3, wd 1e-6, batch 256, 100 epochs)."""

    epochs: int = 100
    batch_size: int = 256
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        name="sgd", lr=0.3, scale_lr=False, weight_decay=1e-6, momentum=0.9, exclude_bias_norm=False))
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    bn: bool = True                          # BatchNorm1d(affine=False) before the linear layer
    report: Literal["last", "best"] = "last"  # best: the best epoch on the evaluation split (official
                                               # evaluate.py's best_acc; selected on that split, so optimistic)
    crop_scale: tuple[float, float] = (0.08, 1.0)
    seed: int = 0


def probe_views(augment: Any, scale: tuple[float, float]) -> Augment:
    """The probe's training transform for the engine's sources: one RandomResizedCrop + flip view per
    image, at ``augment``'s size and normalisation."""
    spec = ViewSpec(scale=tuple(scale), jitter_p=0.0, gray_p=0.0)    # type: ignore[arg-type]
    return Augment("linear-protocol", augment.image_size, augment.mean.tolist(), augment.std.tolist(), [spec])


def build_classifier(dim: int, num_classes: int, bn: bool, seed: int) -> nn.Module:
    """[BatchNorm1d(affine=False)] -> Linear, weights N(0, 0.01) and zero bias (MoCo v3 / SimSiam)."""
    lin = nn.Linear(dim, num_classes)
    g = torch.Generator().manual_seed(epoch_seed(seed, 0, PROBE_STREAM))
    with torch.no_grad():
        lin.weight.normal_(0.0, 0.01, generator=g)
        lin.bias.zero_()
    return nn.Sequential(nn.BatchNorm1d(dim, affine=False), lin) if bn else nn.Sequential(lin)


def fingerprint(backbone: nn.Module, settings: dict[str, Any]) -> str:
    """sha256 of the encoder's tensors (names, dtypes, shapes, bytes) and the protocol's settings: a
    resumed probe continues only the probe of the same encoder under the same settings."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, t in sorted(backbone.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def protocol_probe(backbone: nn.Module, dataset: Any, augment: Any, cfg: ProtocolConfig | None = None,
                   out_dir: str | Path | None = None, resume: bool = False,
                   feature_batch: int = 256) -> dict[str, Any]:
    """Train the protocol's linear classifier on ``dataset.train`` through the frozen ``backbone``
    (on its device) and return ``{"top1", "top5", "protocol": "augmented", ...}`` on ``dataset.test``.

    ``augment``: the dataset's ``Augment`` (its size, mean/std and eval transform). ``out_dir``: where
    the per-epoch checkpoint goes (``resume`` continues it); None keeps nothing.
    """
    cfg = cfg or ProtocolConfig()
    device = model_device(backbone)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed, precision="fp32",
                       channels_last=False, device=str(device), optim=cfg.optim, schedule=cfg.schedule)
    plan = plan_run(tcfg, len(dataset.train.labels), device)
    views = probe_views(augment, cfg.crop_scale)
    source = make_source(dataset, plan, views)
    dim = int(backbone.feature_dim)
    classifier = build_classifier(dim, dataset.num_classes, cfg.bn, cfg.seed).to(device)
    model: nn.Module = classifier
    if plan.world > 1:
        classifier = convert_sync_batchnorm(classifier, device)
        model = DDP(classifier, device_ids=[device.index] if device.type == "cuda" else None)
    opt = build_optimizer(cfg.optim, classifier, plan.peak_lr)
    ckpt = Path(out_dir) / CHECKPOINT if out_dir is not None else None
    start = 0
    state: dict[str, Any] = {}
    owner = fingerprint(backbone, to_dict(cfg))
    if resume and ckpt is not None and ckpt.is_file():
        state = load_checkpoint(ckpt)
        if state.get("owner") != owner:
            log(f"linear protocol: {ckpt} holds a probe of another encoder or other settings; starting over")
        else:
            classifier.load_state_dict(state["classifier"])
            opt.load_state_dict(state["optimizer"])
            start = int(state["epoch"])
            log(f"linear protocol: resuming {ckpt} after epoch {start}")
    was = backbone.training
    backbone.eval()
    amp = feature_autocast(device)
    step = start * plan.steps_per_epoch
    best = dict(state.get("best") or {}) if start else {}
    history: list[float] = list(state.get("history") or []) if start else []
    test_f = split_features(backbone, dataset, "test", augment, feature_batch, device) if cfg.report == "best" \
        else None      # frozen backbone, deterministic view: the test features are the same every epoch
    try:
        for epoch in range(start, cfg.epochs):
            classifier.train()
            loss_sum = torch.zeros((), device=device)
            steps = source.steps(epoch)
            for _ in progress(range(plan.steps_per_epoch), desc=f"linear {epoch + 1}/{cfg.epochs}",
                              total=plan.steps_per_epoch):
                apply_lr(opt, lr_factor(step, plan.total_steps, plan.warmup_steps, cfg.schedule))
                for (v,), y in next(steps):
                    with torch.no_grad(), amp:
                        f = backbone(v).flatten(1).float()
                    loss = F.cross_entropy(model(f), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    loss_sum += loss.detach()
                step += 1
            if test_f is not None:
                scores = _score(classifier, test_f, dataset.test.labels, device)
                history.append(scores["top1"])
                best = {k: max(best.get(k, 0.0), v) for k, v in scores.items()}   # each the best of its own
                classifier.train()
            if ckpt is not None and plan.main:
                atomic_save({"classifier": classifier.state_dict(), "optimizer": opt.state_dict(),
                             "epoch": epoch + 1, "owner": owner, "best": best, "history": history}, ckpt)
            if epoch + 1 == cfg.epochs or (epoch + 1) % 10 == 0:
                log(f"linear protocol epoch {epoch + 1}: train loss {float(loss_sum) / plan.steps_per_epoch:.4f}")
    finally:
        source.close()
        backbone.train(was)
    if test_f is None:
        test_f = split_features(backbone, dataset, "test", augment, feature_batch, device)
    last = _score(classifier, test_f, dataset.test.labels, device, outcomes=cfg.report == "last")
    out = {**(best if cfg.report == "best" and best else last), "protocol": "augmented", "epochs": cfg.epochs,
           "batch_size": cfg.batch_size, "optim": cfg.optim.name, "lr": plan.peak_lr, "bn": cfg.bn,
           "report": cfg.report}
    if cfg.report == "best":
        out.update(last_top1=last["top1"], epoch_top1=history)
    return out


def _score(classifier: nn.Module, test_f: torch.Tensor, labels: torch.Tensor,
           device: torch.device, outcomes: bool = False) -> dict[str, Any]:
    """Top-1 / top-5 (percent) of the classifier on precomputed test features (eval mode);
    ``outcomes``: also ``right`` (each image's top-1 / top-5 hit; a best-epoch report has none, its
    two numbers may come from different epochs)."""
    classifier.eval()
    with torch.no_grad():
        logits, y = classifier(test_f.to(device).float()), labels.to(device)
        hits = topk_hits(logits, y, (1, 5)).tolist()
    n = max(1, int(labels.shape[0]))
    out: dict[str, Any] = {"top1": 100.0 * hits[0] / n, "top5": 100.0 * hits[1] / n}
    if outcomes:
        out["right"] = {"top1": topk_hit(logits, y, 1).cpu(), "top5": topk_hit(logits, y, 5).cpu()}
    return out


def protocol_config(recipe: str | Path | None, overrides: dict[str, Any] | None = None) -> ProtocolConfig:
    """A ProtocolConfig from a ``recipes/linear/*.yaml`` file (None: the defaults), then ``overrides``."""

    data = to_dict(ProtocolConfig())
    recipe = find_recipe(recipe, "linear", "--linear-recipe")
    if recipe is not None:
        data = deep_update(data, read_recipe(recipe, "linear ProtocolConfig"))
    if overrides:
        data = deep_update(data, overrides)
    return from_dict(ProtocolConfig, data)


__all__ = ["PROTOCOLS", "ProtocolConfig", "build_classifier", "protocol_config",
           "protocol_probe"]
