"""The training engine: ``train(cfg, method, dataset, augment, out_dir)``.

The engine only calls the Method contract (``use_views``, ``use_epochs``, ``raw_views``, ``forward(views) -> {"loss",
"z1", "z2", "feats1", ...}``, ``before_optimizer_step``, ``on_epoch_start``, ``on_train_step_end``,
``run_outputs``, ``predictor_weight``, ``project``, ``backbone``); it knows nothing about any one method.

Data comes from a source (``simxir.train.source``: in memory, or streamed from files by DataLoader
workers). Each epoch draws one global permutation from ``(seed, epoch)`` (identical on every rank);
step ``i`` takes the global batch ``perm[i*B:(i+1)*B]`` and rank ``r`` its ``r``-th slice; the source
yields its augmented views on the device; the engine runs forward/backward and steps. The
augmentation draws from its own generator on the device, seeded at every epoch start from
``(seed, epoch)`` alike on every rank (``source.seed_augment``; streamed crops are seeded per
sample), and torch's, numpy's and Python's generators from ``(seed, epoch, rank)``, so a run resumed
from an epoch-boundary checkpoint reproduces the uninterrupted run bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from simxir import distributed
from simxir.augment import RAW
from simxir.config import save_recipe, to_dict
from simxir.errors import TrainingDiverged, TrainingInterrupted, UserError
from simxir.io import atomic_save, to_python
from simxir.methods.base import Method
from simxir.progress import log, progress
from simxir.train.checkpoint import (
    CHECKPOINT,
    load_training_checkpoint,
    restore,
    resume_changes,
    save_checkpoint,
)
from simxir.train.config import TrainConfig
from simxir.train.export import backbone_name, save_predictor, write_run_encoder
from simxir.train.logging import Trackers, check_backends, write_csv
from simxir.train.model import Trainable, build_probe, prepare_model
from simxir.train.monitors import collapse_label, evaluate_monitors
from simxir.train.optim import build_optimizer
from simxir.train.plan import Plan, epoch_seed, plan_run
from simxir.train.precision import choose_precision, precision_record
from simxir.train.schedule import apply_lr, apply_value_schedules, check_value_schedules, lr_factor
from simxir.train.source import MemorySource, StreamSource, make_source
from simxir.train.step import train_step

EpochCallback = Callable[[int, dict[str, Any]], "bool | None"]
Evaluator = Callable[[nn.Module, int], dict[str, Any]]


class _NonFiniteLoss(Exception):
    """Raised inside an epoch; :func:`train` turns it into TrainingDiverged with what was kept."""


@dataclass
class _Run:
    """What every epoch of one run uses."""

    plan: Plan
    trainable: Trainable
    model: nn.Module                       # trainable, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    source: MemorySource | StreamSource
    tb: Trackers
    step_log: list[dict[str, Any]]


def what_ran(cfg: TrainConfig, method: nn.Module) -> TrainConfig:
    """``cfg`` naming the method and its config as built, and a user's own backbone module
    (``python:module.Class``) where ``cfg.backbone`` would name one of simxir's: what config.yaml records."""
    updates: dict[str, Any] = {}
    if getattr(method, "name", None) and method.name != "base":
        updates["method_name"] = method.name
    if dataclasses.is_dataclass(getattr(method, "cfg", None)):
        updates["method"] = to_dict(method.cfg)
    backbone = getattr(method, "backbone", None)
    if isinstance(backbone, nn.Module) and not hasattr(backbone, "arch"):
        updates["backbone"] = backbone_name(backbone)
    return dataclasses.replace(cfg, **updates)


def method_views(method: nn.Module, augment: Any, cfg: TrainConfig) -> Any:
    """The augmentation making the views ``cfg.multicrop`` asks for and the method takes: the method
    told the counts (``use_views``, which refuses what its loss is not written for) and the views it
    wants un-augmented (``raw_views``) made the evaluation view."""
    mc = cfg.multicrop
    if hasattr(method, "use_views"):
        method.use_views(mc.global_crops, mc.local_crops)
    specs = getattr(augment, "specs", None)
    if specs is None or not hasattr(augment, "with_specs"):
        return augment
    if len(specs) != mc.global_crops + mc.local_crops:
        raise UserError(f"multicrop: the augmentation makes {len(specs)} views, the config asks for "
                        f"{mc.global_crops} global + {mc.local_crops} local")
    raw = method.raw_views() if hasattr(method, "raw_views") else frozenset()
    return augment.with_specs([RAW if i in raw else s for i, s in enumerate(specs)]) if raw else augment


def train(cfg: TrainConfig, method: nn.Module, dataset: Any, augment: Any, out_dir: str | Path,
          resume: bool = False, callbacks: Sequence[EpochCallback] = (), evaluator: Evaluator | None = None,
          device: torch.device | None = None) -> dict[str, Any]:
    """Train ``method`` on ``dataset.train`` for ``cfg.epochs``; returns the run's summary.

    ``callbacks``: ``fn(epoch, metrics)`` after each epoch (and its checkpoint, when one was due:
    ``cfg.checkpoint_interval_s``); returning True stops the run there, checkpointed (no export).
    ``evaluator``: ``fn(backbone, epoch) -> dict`` merged into the epoch's
    metrics on monitor epochs (rank 0). Returns ``{"epochs": [...], "collapsed": bool,
    "encoder": path | None, "run_dir": ..., "steps": [...], "stopped_early": bool}``.
    Raises TrainingDiverged on a nan/inf loss (the last good checkpoint is kept) and
    TrainingInterrupted on Ctrl-C.
    """
    run_dir = Path(out_dir)
    cfg = what_ran(cfg, method)
    check_backends(list(cfg.logging.backends))
    plan = plan_run(cfg, len(dataset.train), device)
    ckpt = load_training_checkpoint(run_dir) if resume else None
    augment = method_views(method, augment, cfg)
    if hasattr(method, "use_epochs"):
        method.use_epochs(plan.cfg.epochs)
    sizes = ([augment.size_of(s) for s in augment.specs] if hasattr(augment, "size_of")
             else int(getattr(augment, "image_size", 0) or dataset.image_size))
    plan = choose_precision(plan, method, sizes, saved=ckpt.get("precision") if ckpt is not None else None)
    cfg = plan.cfg
    check_value_schedules(cfg, getattr(method, "cfg", None))
    why = getattr(method, "batch_statistics", "")
    if cfg.accumulate > 1 and why:
        raise UserError(f"accumulate={cfg.accumulate}: {cfg.method_name}'s loss uses {why} over the whole batch; "
                        f"with accumulation they would come from micro-batches of {plan.micro} images and the "
                        f"loss would change. Reach batch_size={cfg.batch_size} with more processes (torchrun) or "
                        f"train a smaller batch; accumulation is for losses that are means over samples "
                        f"(byol, simsiam, moco, simxir)")
    probe = (build_probe(int(method.backbone.feature_dim), dataset.num_classes, cfg.seed)
             if cfg.probe.enabled and dataset.num_classes else None)   # unlabelled data: no online probe
    trainable, model = prepare_model(method, probe, plan.device, plan.channels_last, cfg.find_unused_parameters)
    extra = [] if probe is None else [{"name": "probe", "params": list(probe.parameters()),
                                       "lr": cfg.probe.lr, "weight_decay": cfg.probe.weight_decay}]
    optimizer = build_optimizer(cfg.optim, trainable.method, plan.peak_lr, extra)
    scaler = torch.amp.GradScaler("cuda") if plan.amp_dtype == torch.float16 else None

    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "step_log": []}
    if ckpt is not None:
        for change in resume_changes(ckpt.get("config") or {}, to_dict(cfg)):
            log(f"resume applies {change}")
        state = restore(ckpt, trainable.method, probe, optimizer, scaler, plan.steps_per_epoch)
        del ckpt   # its tensors are in the model and optimizer now
        log(f"resuming {run_dir} after epoch {state['epoch']} (step {state['step']})")
    elif (run_dir / CHECKPOINT).exists():
        raise UserError(f"--out {run_dir}: already holds a checkpoint; pass --resume to continue it "
                        f"or choose another folder")
    if plan.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_recipe(cfg, run_dir / "config.yaml")
    source = make_source(dataset, plan, augment)
    tb = Trackers(run_dir, list(cfg.logging.backends), to_dict(cfg), cfg.logging.project, cfg.logging.wandb_mode,
                  enabled=plan.main, tensorboard=cfg.tensorboard, purge_step=state["step"] if resume else None)
    run = _Run(plan, trainable, model, optimizer, scaler, source, tb, state["step_log"])
    log(_start_line(plan, type(method).__name__, len(source)))

    history, step, start = state["history"], state["step"], state["epoch"]
    saved = _Saved(start if resume else None)
    stopped_early = False
    try:
        for epoch in range(start, cfg.epochs):
            metrics, step = _train_epoch(run, epoch, step)
            if plan.main and ((epoch + 1) % max(1, cfg.monitor.every) == 0 or epoch + 1 == cfg.epochs):
                metrics.update(_monitors(run, metrics, history))
                if evaluator is not None:
                    metrics.update(to_python(evaluator(trainable.method.backbone, epoch + 1)))
            history.append(metrics)
            if plan.main:
                _log_epoch(run, run_dir, history, step)
                if saved.due(cfg.checkpoint_interval_s) or epoch + 1 == cfg.epochs:
                    saved.save(run, run_dir, probe, history, step)
            distributed.wait_for_main()   # rank 0 evaluated and saved alone
            saved.share(plan)
            if any(bool(cb(epoch + 1, metrics)) for cb in callbacks):
                stopped_early = epoch + 1 < cfg.epochs
                if plan.main and saved.epoch != epoch + 1:
                    saved.save(run, run_dir, probe, history, step)
                distributed.wait_for_main()
                saved.share(plan)
                break
    except _NonFiniteLoss as exc:
        tb.close()
        last = (f"last good checkpoint {run_dir / CHECKPOINT} (after epoch {saved.epoch})"
                if saved.epoch is not None else "no checkpoint was written yet")
        raise TrainingDiverged(f"{exc}; {last}") from None
    except KeyboardInterrupt:
        tb.close()
        kept = (f"{run_dir / CHECKPOINT} holds epoch {saved.epoch} of {cfg.epochs}" if saved.epoch is not None
                else "no checkpoint was written yet (interrupted in the first epoch)")
        raise TrainingInterrupted(f"interrupted in epoch {len(history) + 1} of {cfg.epochs}; {kept}; "
                                  f"to continue, rerun the command with --out {run_dir} --resume") from None
    finally:
        source.close()   # stop the loader's workers, however the loop ended

    tb.close(history[-1] if history else None)
    encoder = None
    if plan.main and not stopped_early:
        encoder = str(write_run_encoder(trainable.method.backbone, run_dir))
        outputs = getattr(trainable.method, "run_outputs", None)   # a method's own files (DINO's checkpoint.pth)
        for name, obj in (outputs() if outputs is not None else {}).items():
            atomic_save(obj, run_dir / name)
    distributed.wait_for_main()   # rank 0 wrote the encoder alone
    last = history[-1] if history else {}
    return {"epochs": history, "collapsed": bool(last.get("collapsed", False)), "encoder": encoder,
            "run_dir": str(run_dir), "steps": run.step_log, "stopped_early": stopped_early}


def _train_epoch(run: _Run, epoch: int, step: int) -> tuple[dict[str, Any], int]:
    """One pass over the shuffled train set from global ``step``; returns the epoch's metrics (step
    logs averaged, lr, throughput) and the new step. Raises _NonFiniteLoss on a nan/inf loss."""
    plan, cfg = run.plan, run.plan.cfg
    aug_seed = epoch_seed(cfg.seed, epoch, 1 + plan.rank)
    torch.manual_seed(aug_seed)
    np.random.seed(aug_seed % 2**32)
    random.seed(aug_seed)
    run.trainable.method.on_epoch_start(epoch)
    run.trainable.train()
    sums: dict[str, Any] = {}               # device tensors (the step's logs) and the loss, summed
    spread_init = None
    n_steps = 0
    bar = progress(range(plan.steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   total=plan.steps_per_epoch)
    lr = run.optimizer.param_groups[0]["lr"]
    t_start = t_first = time.perf_counter()
    steps = run.source.steps(epoch)
    method = run.trainable.method
    scheduled = cfg.optim.weight_decay_end is not None or bool(cfg.schedule.method)
    before_step = _before_step(method, cfg.optim.clip_grad, lambda: step, plan.total_steps, cfg.optim.clip_mode)
    for i in bar:
        lr = apply_lr(run.optimizer, lr_factor(step, plan.total_steps, plan.warmup_steps, cfg.schedule))
        if scheduled:
            apply_value_schedules(cfg, run.optimizer, getattr(method, "cfg", None), step, plan.total_steps)
        loss, logs = train_step(run.model, run.optimizer, next(steps), cfg.accumulate,
                                plan.amp_dtype, run.scaler, before_step)
        if not math.isfinite(loss):
            raise _NonFiniteLoss(f"loss is {loss} at epoch {epoch + 1}, step {i + 1} of the epoch "
                                 f"(global step {step + 1})")
        run.trainable.method.on_train_step_end(step, plan.total_steps)
        if step == 0 and "z_spread" in logs:
            spread_init = logs["z_spread"]
        step += 1
        n_steps += 1
        if n_steps == 1:
            t_first = time.perf_counter()
        sums["loss"] = sums.get("loss", 0.0) + loss
        for k, v in logs.items():
            sums[k] = v if k not in sums else sums[k] + v
        if step % cfg.log_every == 0 or i == plan.steps_per_epoch - 1:
            run.step_log.append({"step": step, "epoch": epoch + 1, "loss": loss, "lr": lr})
            run.tb.scalars("step", {"loss": loss, "lr": lr}, step)
            if hasattr(bar, "set_postfix"):  # the epoch's running mean, as metrics.csv reports
                bar.set_postfix(loss=f"{sums['loss'] / n_steps:.4f}", lr=f"{lr:.3g}")
    t_end = time.perf_counter()
    # throughput of the training loop, the first (warm-up) step excluded when there are others
    imgs_per_s = (cfg.batch_size * (n_steps - 1) / (t_end - t_first) if n_steps > 1
                  else cfg.batch_size / (t_end - t_start))
    metrics: dict[str, Any] = {"epoch": epoch + 1, "step": step, "lr": lr,
                               "train_time_s": t_end - t_start, "train_img_per_s": imgs_per_s}
    once = {f"once:{k}": v for k, v in run.source.epoch_stats().items()}   # per epoch, not per step
    if spread_init is not None:   # the loss's embeddings' spread at the very first step
        once["once:z_spread_init"] = spread_init
    both = _over_ranks({**sums, **once}, plan)   # the epoch's one read of the logged tensors
    sums = {k: v for k, v in both.items() if not k.startswith("once:")}
    metrics.update({k.removeprefix("once:"): v for k, v in both.items() if k.startswith("once:")})
    if "skipped_unreadable" in metrics:   # a count: summed over processes
        metrics["skipped_unreadable"] = int(round(metrics["skipped_unreadable"] * plan.world))
    metrics.update({k: v / n_steps for k, v in sums.items() if not k.startswith("probe_")})
    if "data_wait_s" in metrics:   # the share of the loop spent waiting for the loader
        metrics["data_wait_frac"] = metrics["data_wait_s"] / max(t_end - t_start, 1e-9)
    if sums.get("probe_count"):
        metrics["probe_train_top1"] = sums["probe_hits1"] / sums["probe_count"]
        metrics["probe_train_top5"] = sums["probe_hits5"] / sums["probe_count"]
    return metrics, step


def clip_per_param_(params: list[torch.Tensor], clip: float) -> None:
    """DINO's ``clip_gradients``: each parameter's gradient scaled to norm at most ``clip``
    (factor ``clip / (norm + 1e-6)`` where below 1), computed on the device without a host read."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    torch._foreach_mul_(grads, [torch.clamp(clip / (n + 1e-6), max=1.0) for n in norms])


def _before_step(method: nn.Module, clip_grad: float, current_step: Callable[[], int],
                 total_steps: int, clip_mode: str = "global") -> Callable[[], None] | None:
    """What runs between backward and the optimizer step: gradient clipping (a tensor norm and one
    multiply, no host read) and the method's ``before_optimizer_step`` when it has its own; None
    when neither is there, so a step without them does nothing extra (no GradScaler unscale)."""
    params = [p for p in method.parameters() if p.requires_grad] if clip_grad > 0 else []
    hook = getattr(method, "before_optimizer_step", None)   # a Method's; a bare nn.Module may lack it
    if hook is not None and getattr(type(method), "before_optimizer_step", None) is Method.before_optimizer_step:
        hook = None   # the base class's no-op
    if not params and hook is None:
        return None

    def before_step() -> None:
        if params and clip_mode == "per_param":
            clip_per_param_(params, clip_grad)
        elif params:
            torch.nn.utils.clip_grad_norm_(params, clip_grad, foreach=True)
        if hook is not None:
            hook(current_step(), total_steps)

    return before_step


def _over_ranks(sums: dict[str, Any], plan: Plan) -> dict[str, float]:
    """Each value averaged over the processes (one all-reduce per epoch) and read to the host once:
    per-process numbers (z_spread, the loader's wait, the probe's hits and counts: their ratio is
    then the global accuracy) become the run's."""
    keys = sorted(sums)
    if not keys:
        return {}
    vec = torch.stack([torch.as_tensor(sums[k], dtype=torch.float64).to(plan.device).reshape(()) for k in keys])
    if plan.world > 1:
        dist.all_reduce(vec)
        vec /= plan.world
    return dict(zip(keys, vec.tolist(), strict=True))


def _monitors(run: _Run, metrics: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The epoch-end monitors; the scale-collapse rule compares ``z_spread`` with its first-step value
    (kept in the first epoch's metrics, so it survives --resume)."""
    out: dict[str, Any] = {}
    spread_init = (history[0] if history else metrics).get("z_spread_init")
    if spread_init and "z_spread" in metrics:
        out["z_spread_ratio"] = metrics["z_spread"] / spread_init
    ratio = out.get("z_spread_ratio") if getattr(run.trainable.method, "scale_sensitive", False) else None
    test_x, test_y = run.source.monitor_set()
    out.update(evaluate_monitors(run.trainable, run.source.augment, test_x, test_y, run.plan.cfg, run.plan.amp_dtype,
                                 run.plan.device, run.plan.channels_last, spread_ratio=ratio))
    return out


def _log_epoch(run: _Run, run_dir: Path, history: list[dict[str, Any]], step: int) -> None:
    """Rank 0 after each epoch: predictor snapshot, CSV and TensorBoard logs, a log line."""
    cfg, metrics = run.plan.cfg, history[-1]
    if cfg.monitor.save_predictor:
        w = run.trainable.method.predictor_weight()
        if w is not None:
            save_predictor(w, run_dir, metrics["epoch"])
    write_csv(history, run_dir / "metrics.csv")
    write_csv(run.step_log, run_dir / "steps.csv")
    run.tb.scalars("epoch", {k: v for k, v in metrics.items() if k not in ("epoch", "step")}, step)
    log(_epoch_line(metrics))


class _Saved:
    """The run's checkpoint: the epoch it holds and when rank 0 wrote it."""

    def __init__(self, epoch: int | None) -> None:
        self.epoch, self.at = epoch, -math.inf

    def due(self, interval_s: float) -> bool:
        """At most one checkpoint per ``interval_s`` seconds (the first epoch's is always due)."""
        return time.monotonic() - self.at >= interval_s

    def save(self, run: _Run, run_dir: Path, probe: nn.Module | None, history: list[dict[str, Any]],
             step: int) -> None:
        save_checkpoint({
            "model": run.trainable.method.state_dict(),
            "probe": probe.state_dict() if probe is not None else None,
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict() if run.scaler is not None else {},
            "epoch": history[-1]["epoch"], "step": step, "history": history, "step_log": run.step_log,
            "config": to_dict(run.plan.cfg), "precision": precision_record(run.plan),
        }, run_dir)
        self.epoch, self.at = history[-1]["epoch"], time.monotonic()

    def share(self, plan: Plan) -> None:
        """Every rank learns the epoch rank 0's checkpoint holds, once rank 0 has written it (the
        epoch's barrier), so that each rank's NaN or Ctrl-C message names it."""
        if plan.world > 1:
            t = torch.tensor([-1 if self.epoch is None else self.epoch], device=plan.device)
            dist.broadcast(t, 0)
            self.epoch = None if int(t.item()) < 0 else int(t.item())


def _start_line(plan: Plan, name: str, n_train: int) -> str:
    cfg = plan.cfg
    precision = "fp32" if plan.amp_dtype is None else str(plan.amp_dtype).split(".")[-1]
    return (f"training {name} on {n_train} images: {cfg.epochs} epochs x {plan.steps_per_epoch} steps, "
            f"batch {cfg.batch_size} ({plan.world} proc x {cfg.accumulate} accum x {plan.micro}), "
            f"lr {plan.peak_lr:.4g}, {cfg.optim.name}, {precision}, channels_last={plan.channels_last} "
            f"({plan.precision_reason}), device {plan.device}")


def _epoch_line(m: dict[str, Any]) -> str:
    parts = [f"epoch {m['epoch']}", f"loss {m['loss']:.4f}"]
    if "train_time_s" in m:
        parts.append(f"{m['train_time_s']:.1f} s")
    for k in ("probe_train_top1", "probe_test_top1", "knn_top1", "z_std", "z_spread_ratio", "feat_erank",
              "decorrelation"):
        if k in m and isinstance(m[k], float):
            parts.append(f"{k} {m[k]:.4g}")
    if m.get("collapsed"):
        parts.append(collapse_label(m))
    return ", ".join(parts)
