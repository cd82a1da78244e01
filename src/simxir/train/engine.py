"""The training engine: ``train(cfg, method, dataset, augment, out_dir)``.

The engine only calls the Method contract (``forward(v1, v2) -> {"loss", "z1", "z2", "feats1", ...}``,
``on_epoch_start``, ``on_train_step_end``, ``predictor_weight``, ``project``, ``backbone``); it knows
nothing about any one method.

Data: the uint8 train set stays in memory (on the device by default). Each epoch draws one global
permutation from ``(seed, epoch)`` (identical on every rank); step ``i`` takes the global batch
``perm[i*B:(i+1)*B]`` and rank ``r`` its ``r``-th slice, augments it on the device
(``augment.views``), runs forward/backward, and steps. The augmentation RNG (torch's global
generator) is re-seeded at every epoch start from ``(seed, epoch, rank)``, so a run resumed from an
epoch-boundary checkpoint reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from simxir import distributed
from simxir.config import save_recipe, to_dict
from simxir.device import bf16_supported, default_device
from simxir.errors import UserError
from simxir.io import atomic_save, atomic_write_bytes
from simxir.progress import log, progress
from simxir.train import monitors
from simxir.train.checkpoint import CHECKPOINT, load_training_checkpoint, save_checkpoint, set_rng_state
from simxir.train.config import TrainConfig
from simxir.train.logging import TensorBoard, write_csv
from simxir.train.optim import build_optimizer
from simxir.train.schedule import apply_lr, auto_epochs, lr_factor
from simxir.train.syncbn import convert_sync_batchnorm

PROBE_STREAM = 2**31
EpochCallback = Callable[[int, dict[str, Any]], "bool | None"]


class TrainingDiverged(RuntimeError):
    """The loss became nan/inf; the message names epoch and step and the last good checkpoint."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C (KeyboardInterrupt) during training; the message names what was kept and how to resume."""


# ----------------------------------------------------------------------------------------------
# resolution of device / precision / layout


def resolve_device(cfg: TrainConfig) -> torch.device:
    """The device of this process: torchrun's (after init_process_group) or ``cfg.device``."""
    if distributed.is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return distributed.init_from_env()
    if cfg.device == "auto":
        return default_device()
    try:
        dev = torch.device(cfg.device)
    except RuntimeError:
        raise UserError(f"device: expected auto, cpu, cuda or cuda:N, got {cfg.device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device: {cfg.device!r} requested but CUDA is not available")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32): auto is bf16 where supported (CUDA, AVX512-BF16/AMX CPUs)."""
    if precision == "fp32":
        return None
    if precision == "auto":
        return torch.bfloat16 if bf16_supported(device) else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise UserError("precision: fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    raise UserError(f"precision: expected auto, fp32, bf16 or fp16, got {precision!r}")


def resolve_channels_last(value: bool | str) -> bool:
    """channels_last: ``auto`` turns it on (faster for convnets on CUDA and oneDNN CPUs)."""
    return True if value == "auto" else bool(value)


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)``: stream 0 = shuffle, 1 + rank = augmentation,
    ``PROBE_STREAM`` = probe init."""
    return int(np.random.SeedSequence([seed % 2**64, epoch, stream]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------------------------
# model wrapper and one optimizer step


class Trainable(nn.Module):
    """The method plus the online linear probe, so that one DDP wrapper reduces all gradients.

    The probe sees ``feats1`` detached, in float32 outside autocast; without ``feats1`` (or labels)
    its loss is a zero that still touches its parameters (DDP needs every parameter used).
    """

    def __init__(self, method: nn.Module, probe: nn.Module | None):
        super().__init__()
        self.method = method
        self.probe = probe

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, y: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        out = dict(self.method(v1, v2))
        if self.probe is not None:
            feats = out.get("feats1")
            with torch.autocast(device_type=v1.device.type, enabled=False):
                if feats is not None and y is not None:
                    logits = self.probe(feats.detach().float())
                    out["probe_loss"] = F.cross_entropy(logits, y)
                    out["probe_logits"] = logits.detach()
                else:
                    out["probe_loss"] = sum(p.sum() for p in self.probe.parameters()) * 0.0
        return out


def prepare_model(method: nn.Module, probe: nn.Module | None, device: torch.device,
                  channels_last: bool, find_unused_parameters: bool = False
                  ) -> tuple[Trainable, nn.Module]:
    """(trainable, model_to_call): moved to ``device``, channels_last, SyncBatchNorm + DDP when distributed.

    SyncBatchNorm is ``nn.SyncBatchNorm`` on CUDA and :class:`~simxir.train.syncbn.PortableSyncBatchNorm`
    elsewhere (PyTorch's is GPU-only).
    """
    trainable = Trainable(method, probe).to(device)
    if channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    model: nn.Module = trainable
    if distributed.world_size() > 1:
        trainable = convert_sync_batchnorm(trainable, device)
        model = DDP(trainable, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=find_unused_parameters)
    return trainable, model


_SKIP_KEYS = {"loss", "probe_loss", "probe_logits", "z1", "z2", "feats1"}


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer,
               batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]], n_micro: int,
               amp_dtype: torch.dtype | None, scaler: torch.amp.GradScaler | None = None
               ) -> tuple[float, dict[str, float]]:
    """One optimizer step over ``n_micro`` micro-batches (gradient accumulation; DDP syncs on the last).

    Returns ``(loss, logs)``: the method loss averaged over micro-batches and processes (nan/inf
    when diverged, in which case the optimizer does NOT step), and local scalar logs (other 0-d
    outputs, probe top-1/top-5 counts).
    """
    optimizer.zero_grad(set_to_none=True)
    loss_sum: torch.Tensor | None = None
    logs: dict[str, float] = {}
    hits1 = hits5 = count = 0
    for i, (v1, v2, y) in enumerate(batches):
        sync = nullcontext() if (i == n_micro - 1 or not isinstance(model, DDP)) else model.no_sync()
        with sync:
            with torch.autocast(device_type=v1.device.type, dtype=amp_dtype or torch.float32,
                                enabled=amp_dtype is not None):
                out = model(v1, v2, y)
            loss = out["loss"].float()
            total = (loss + out.get("probe_loss", 0.0)) / n_micro
            (scaler.scale(total) if scaler is not None else total).backward()
        d = loss.detach()
        loss_sum = d if loss_sum is None else loss_sum + d
        for k, v in out.items():
            if k not in _SKIP_KEYS and isinstance(v, torch.Tensor) and v.ndim == 0:
                logs[k] = logs.get(k, 0.0) + float(v.detach()) / n_micro
        if isinstance(out.get("z1"), torch.Tensor) and out["z1"].shape[0] > 1:
            logs["z_spread"] = logs.get("z_spread", 0.0) + monitors.spread(out["z1"]) / n_micro
        if "probe_logits" in out and y is not None:
            hit = monitors.topk_correct(out["probe_logits"], y, (1, 5))
            hits1, hits5, count = hits1 + hit[1], hits5 + hit[5], count + y.shape[0]
    assert loss_sum is not None, "train_step: no micro-batches"
    loss_mean = distributed.all_reduce_mean(loss_sum / n_micro)
    value = float(loss_mean)
    if not math.isfinite(value):
        optimizer.zero_grad(set_to_none=True)
        return value, logs
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if count:
        logs["probe_hits1"], logs["probe_hits5"], logs["probe_count"] = hits1, hits5, count
    return value, logs


# ----------------------------------------------------------------------------------------------
# monitors at epoch end


@torch.no_grad()
def evaluate_monitors(trainable: Trainable, augment: Any, test_x: torch.Tensor, test_y: torch.Tensor,
                      cfg: TrainConfig, amp_dtype: torch.dtype | None, device: torch.device,
                      channels_last: bool, spread_ratio: float | None = None) -> dict[str, Any]:
    """Online-probe test accuracy, collapse monitors and decorrelation on un-augmented test images.

    ``spread_ratio``: the training embeddings' ``z_spread`` over its first-step value, for the
    scale-collapse rule (None when the method's loss is scale-free or there is no reference)."""
    method = trainable.method
    was_training = trainable.training
    trainable.eval()
    feats, zs = [], []
    n_eval = min(cfg.monitor.eval_size, test_x.shape[0])
    bs = cfg.monitor.eval_batch_size
    project = getattr(method, "project", None)
    ac = torch.autocast(device_type=device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None)
    for s in range(0, test_x.shape[0], bs):
        x = augment.eval(test_x[s:s + bs].to(device))
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with ac:
            feats.append(method.backbone(x).float())
            if project is not None and s < n_eval:
                zs.append(project(x).float())
    f = torch.cat(feats)
    res: dict[str, Any] = {}
    if trainable.probe is not None and test_y.numel():
        logits = trainable.probe(f)
        hit = monitors.topk_correct(logits, test_y.to(device), (1, 5))
        res["probe_test_top1"] = hit[1] / test_y.shape[0]
        res["probe_test_top5"] = hit[5] / test_y.shape[0]
    fe = f[:n_eval]
    res["feat_std"] = monitors.normalized_std(fe)
    res["feat_erank"] = monitors.effective_rank(fe)
    z = torch.cat(zs)[:n_eval] if zs else fe
    res["z_std"] = monitors.normalized_std(z)
    res["z_std_healthy"] = 1.0 / math.sqrt(z.shape[1])
    res["decorrelation"] = _decorrelation(z)
    reasons = monitors.collapse_reasons(res["z_std"], z.shape[1], res["feat_erank"],
                                        cfg.monitor.collapse_std_ratio, cfg.monitor.collapse_erank,
                                        spread_ratio, cfg.monitor.collapse_spread_ratio)
    res["collapsed"] = bool(reasons)
    res["collapse_reasons"] = "+".join(reasons)   # which rules fired ("" when healthy)
    trainable.train(was_training)
    return res


def _decorrelation(z: torch.Tensor) -> float:
    """||corr(Z) - I||_F^2 via simxir.analysis (nan for zero-variance dims or non-finite input)."""
    try:
        from simxir.analysis import decorrelation
    except ImportError:  # pragma: no cover - analysis is part of the package
        return math.nan
    try:
        return decorrelation(z)
    except UserError:
        return math.nan


# ----------------------------------------------------------------------------------------------
# export


def export_encoder(backbone: nn.Module, run_dir: Path) -> Path:
    """Write run_dir/encoder.safetensors (simxir.models.save_encoder) and run_dir/encoder.pt."""
    enc = copy.deepcopy(backbone).to("cpu").to(memory_format=torch.contiguous_format).float()
    state = {k: v.contiguous() for k, v in enc.state_dict().items()}
    atomic_save(state, run_dir / "encoder.pt")
    path = run_dir / "encoder.safetensors"
    try:
        from simxir.models import save_encoder
    except ImportError:
        save_encoder = None
    if save_encoder is not None:
        save_encoder(enc, path)
    else:  # until simxir.models.save_encoder lands: same format, metadata {"arch": ...}
        from safetensors.torch import save as st_save

        atomic_write_bytes(path, st_save(state, metadata={"arch": str(getattr(enc, "arch", ""))}))
    return path


def _plain(v: Any) -> Any:
    """numpy/tensor scalars -> Python numbers, recursively, so checkpoints load with weights_only."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, torch.Tensor) and v.numel() == 1:
        return v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _save_predictor(weight: torch.Tensor, run_dir: Path, epoch: int) -> None:
    buf = io.BytesIO()
    np.save(buf, weight.detach().float().cpu().numpy())
    atomic_write_bytes(run_dir / "predictor" / f"epoch_{epoch:04d}.npy", buf.getvalue())


# ----------------------------------------------------------------------------------------------
# the loop


def train(cfg: TrainConfig, method: nn.Module, dataset: Any, augment: Any, out_dir: str | Path,
          resume: bool = False, callbacks: Sequence[EpochCallback] = (),
          evaluator: Callable[[nn.Module, int], dict[str, Any]] | None = None,
          device: torch.device | None = None) -> dict[str, Any]:
    """Train ``method`` on ``dataset.train`` for ``cfg.epochs``; returns the run's summary.

    ``callbacks``: ``fn(epoch, metrics)`` after each epoch's checkpoint; returning True stops the
    run there (no export). ``evaluator``: ``fn(backbone, epoch) -> dict`` merged into the epoch's
    metrics on monitor epochs (rank 0). Returns ``{"epochs": [...], "collapsed": bool,
    "encoder": path | None, "run_dir": ..., "steps": [...], "stopped_early": bool}``.
    Raises :class:`TrainingDiverged` on a nan/inf loss (the last good checkpoint is kept).
    """
    run_dir = Path(out_dir)
    device = device or resolve_device(cfg)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    if cfg.epochs is not None and cfg.epochs < 1:
        raise UserError(f"epochs: expected >= 1 (or null for the automatic length), got {cfg.epochs}")
    if cfg.batch_size < 1:
        raise UserError(f"batch_size: expected a positive integer, got {cfg.batch_size}")
    if cfg.threads < 0:
        raise UserError(f"threads: expected 0 (torch's default) or a positive count, got {cfg.threads}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.accumulate < 1:
        raise UserError(f"accumulate: expected >= 1, got {cfg.accumulate}")
    if cfg.batch_size % (world * cfg.accumulate):
        raise UserError(f"batch_size: {cfg.batch_size} is not divisible by processes x accumulate "
                        f"= {world} x {cfg.accumulate}")
    micro = cfg.batch_size // (world * cfg.accumulate)
    local_b = micro * cfg.accumulate
    n_train = int(dataset.train.images.shape[0])
    steps_per_epoch = n_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise UserError(f"batch_size: {cfg.batch_size} is larger than the {n_train} training images")
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(steps_per_epoch))
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = int(round(cfg.schedule.warmup_epochs * steps_per_epoch))
    amp_dtype = resolve_precision(cfg.precision, device)
    channels_last = resolve_channels_last(cfg.channels_last)

    probe = None
    if cfg.probe.enabled:
        feat_dim = int(getattr(method.backbone, "feature_dim"))
        gen = torch.Generator().manual_seed(epoch_seed(cfg.seed, 0, PROBE_STREAM))
        probe = nn.Linear(feat_dim, dataset.num_classes)
        bound = 1.0 / math.sqrt(feat_dim)
        with torch.no_grad():
            probe.weight.uniform_(-bound, bound, generator=gen)
            probe.bias.zero_()
    trainable, model = prepare_model(method, probe, device, channels_last, cfg.find_unused_parameters)
    peak_lr = cfg.optim.lr * (cfg.batch_size / 256 if cfg.optim.scale_lr else 1.0)
    extra = [] if probe is None else [{"name": "probe", "params": list(probe.parameters()),
                                       "lr": cfg.probe.lr, "weight_decay": cfg.probe.weight_decay}]
    optimizer = build_optimizer(cfg.optim, trainable.method, peak_lr, extra)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    start_epoch, step = 0, 0
    history: list[dict[str, Any]] = []
    step_log: list[dict[str, Any]] = []
    ckpt_path = run_dir / CHECKPOINT
    if resume:
        ckpt = load_training_checkpoint(run_dir)
        trainable.method.load_state_dict(ckpt["model"])
        if probe is not None and ckpt.get("probe") is not None:
            probe.load_state_dict(ckpt["probe"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scaler is not None and ckpt.get("scaler"):
            scaler.load_state_dict(ckpt["scaler"])
        start_epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
        history, step_log = list(ckpt["history"]), list(ckpt.get("step_log", []))
        set_rng_state(ckpt["rng"])
        log(f"resuming {run_dir} after epoch {start_epoch} (step {step})")
        if start_epoch * steps_per_epoch != step:
            raise UserError(f"--resume: checkpoint at step {step} does not match {steps_per_epoch} "
                            f"steps per epoch x {start_epoch} epochs; batch_size or data changed")
    elif ckpt_path.exists():
        raise UserError(f"--out {run_dir}: already holds a checkpoint; pass --resume to continue it "
                        f"or choose another folder")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(cfg, run_dir / "config.yaml")

    images = dataset.train.images
    labels = dataset.train.labels
    if cfg.data_on_device:
        images, labels = images.to(device), labels.to(device)
    test_x, test_y = dataset.test.images, dataset.test.labels
    if test_x.shape[0] == 0:
        test_x, test_y = dataset.train.images[:cfg.monitor.eval_size], dataset.train.labels[:0]
    tb = TensorBoard(run_dir / "tb", cfg.tensorboard and main, purge_step=step if resume else None)
    log(f"training {type(method).__name__} on {n_train} images: {cfg.epochs} epochs x "
        f"{steps_per_epoch} steps, batch {cfg.batch_size} ({world} proc x {cfg.accumulate} accum x "
        f"{micro}), lr {peak_lr:.4g}, {cfg.optim.name}, "
        f"{'fp32' if amp_dtype is None else str(amp_dtype).split('.')[-1]}, "
        f"channels_last={channels_last}, device {device}")

    # the loss's embeddings' spread at the very first step (initial weights): the reference of the
    # scale-collapse rule (restored from the first epoch's metrics on --resume)
    spread_init = history[0].get("z_spread_init") if history else None
    stopped_early = False
    try:
        for epoch in range(start_epoch, cfg.epochs):
            shuffle = torch.Generator().manual_seed(epoch_seed(cfg.seed, epoch, 0))
            perm = torch.randperm(n_train, generator=shuffle)
            aug_seed = epoch_seed(cfg.seed, epoch, 1 + rank)
            torch.manual_seed(aug_seed)
            np.random.seed(aug_seed % 2**32)
            random.seed(aug_seed)
            trainable.method.on_epoch_start(epoch)
            trainable.train()
            sums: dict[str, float] = {}
            n_steps = 0
            bar = progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           total=steps_per_epoch)
            lr = optimizer.param_groups[0]["lr"]
            t_start = t_first = time.perf_counter()
            for i in bar:
                idx = perm[i * cfg.batch_size:(i + 1) * cfg.batch_size][rank * local_b:(rank + 1) * local_b]
                lr = apply_lr(optimizer, lr_factor(step, total_steps, warmup_steps, cfg.schedule))

                def micro_batches(idx: torch.Tensor = idx):
                    for a in range(cfg.accumulate):
                        j = idx[a * micro:(a + 1) * micro].to(images.device)
                        x = images[j].to(device, non_blocking=True)
                        y = labels[j].to(device, non_blocking=True)
                        v1, v2 = augment.views(x)
                        if channels_last:
                            v1 = v1.contiguous(memory_format=torch.channels_last)
                            v2 = v2.contiguous(memory_format=torch.channels_last)
                        yield v1, v2, y

                loss, logs = train_step(model, optimizer, micro_batches(), cfg.accumulate, amp_dtype, scaler)
                if not math.isfinite(loss):
                    kept = _checkpoint_epoch(ckpt_path, history, start_epoch)
                    last = (f"last good checkpoint {ckpt_path} (after epoch {kept})" if kept is not None
                            else "no checkpoint was written yet")
                    tb.close()
                    raise TrainingDiverged(f"loss is {loss} at epoch {epoch + 1}, step {i + 1} of the epoch "
                                           f"(global step {step + 1}); {last}")
                trainable.method.on_train_step_end(step, total_steps)
                if step == 0 and "z_spread" in logs:
                    spread_init = logs["z_spread"]
                step += 1
                n_steps += 1
                if n_steps == 1:
                    t_first = time.perf_counter()
                sums["loss"] = sums.get("loss", 0.0) + loss
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                if step % cfg.log_every == 0 or i == steps_per_epoch - 1:
                    step_log.append({"step": step, "epoch": epoch + 1, "loss": loss, "lr": lr})
                    tb.scalars("step", {"loss": loss, "lr": lr}, step)
                    if hasattr(bar, "set_postfix"):  # the epoch's running mean, as metrics.csv reports
                        bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}", lr=f"{lr:.3g}")

            t_end = time.perf_counter()
            # throughput of the training loop, the first (warm-up) step excluded when there are others
            imgs_per_s = (cfg.batch_size * (n_steps - 1) / (t_end - t_first) if n_steps > 1
                          else cfg.batch_size / (t_end - t_start))
            metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr,
                                       "train_time_s": t_end - t_start, "train_img_per_s": imgs_per_s}
            if epoch == 0 and spread_init is not None:
                metrics["z_spread_init"] = spread_init
            for k, v in sums.items():
                if not k.startswith("probe_"):
                    metrics[k] = v / n_steps
            if sums.get("probe_count"):
                metrics["probe_train_top1"] = sums["probe_hits1"] / sums["probe_count"]
                metrics["probe_train_top5"] = sums["probe_hits5"] / sums["probe_count"]
            due = (epoch + 1) % max(1, cfg.monitor.every) == 0 or epoch + 1 == cfg.epochs
            if main and due:
                if spread_init and "z_spread" in metrics:
                    metrics["z_spread_ratio"] = metrics["z_spread"] / spread_init
                ratio = (metrics.get("z_spread_ratio")
                         if getattr(trainable.method, "scale_sensitive", False) else None)
                metrics.update(evaluate_monitors(trainable, augment, test_x, test_y, cfg, amp_dtype, device,
                                                 channels_last, spread_ratio=ratio))
                if evaluator is not None:
                    metrics.update(_plain(evaluator(trainable.method.backbone, epoch + 1)))
            if main and cfg.monitor.save_predictor:
                w = trainable.method.predictor_weight()
                if w is not None:
                    _save_predictor(w, run_dir, epoch + 1)
            history.append(metrics)
            if main:
                save_checkpoint({
                    "model": trainable.method.state_dict(),
                    "probe": probe.state_dict() if probe is not None else None,
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "epoch": epoch + 1, "step": step, "history": history, "step_log": step_log,
                    "config": to_dict(cfg),
                }, run_dir)
                write_csv(history, run_dir / "metrics.csv")
                write_csv(step_log, run_dir / "steps.csv")
                tb.scalars("epoch", {k: v for k, v in metrics.items() if k not in ("epoch", "step")}, step)
                log(_epoch_line(metrics))
            if world > 1:
                dist.barrier()
            if any(bool(cb(epoch + 1, metrics)) for cb in callbacks):
                stopped_early = epoch + 1 < cfg.epochs
                break
    except KeyboardInterrupt:
        tb.close()
        done = _checkpoint_epoch(ckpt_path, history, start_epoch)
        kept = (f"{ckpt_path} holds epoch {done} of {cfg.epochs}" if done is not None
                else "no checkpoint was written yet (interrupted in the first epoch)")
        raise TrainingInterrupted(f"interrupted in epoch {len(history) + 1} of {cfg.epochs}; {kept}; "
                                  f"to continue, rerun the command with --out {run_dir} --resume") from None

    tb.close()
    encoder = None
    if main and not stopped_early:
        encoder = str(export_encoder(trainable.method.backbone, run_dir))
    if world > 1:
        dist.barrier()
    last = history[-1] if history else {}
    return {"epochs": history, "collapsed": bool(last.get("collapsed", False)), "encoder": encoder,
            "run_dir": str(run_dir), "steps": step_log, "stopped_early": stopped_early}


def _checkpoint_epoch(ckpt_path: Path, history: list[dict[str, Any]], start_epoch: int) -> int | None:
    """The epoch the run's checkpoint holds (the last finished one), or None when none was written."""
    if not ckpt_path.exists():
        return None
    return history[-1]["epoch"] if history else start_epoch


def _epoch_line(m: dict[str, Any]) -> str:
    parts = [f"epoch {m['epoch']}", f"loss {m['loss']:.4f}"]
    for k in ("probe_train_top1", "probe_test_top1", "z_std", "z_spread_ratio", "feat_erank", "decorrelation"):
        if k in m and isinstance(m[k], float):
            parts.append(f"{k} {m[k]:.4g}")
    if m.get("collapsed"):
        parts.append(monitors.collapse_label(m))
    return ", ".join(parts)
