"""What a run's config resolves to before the first step: device, precision, memory layout, the
batch geometry (processes x accumulation x micro-batch) and the schedule's length in steps."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np
import torch

from simxir import distributed
from simxir.device import bf16_supported, parse_device
from simxir.errors import UserError
from simxir.progress import log
from simxir.train.config import TrainConfig, check_train_config
from simxir.train.schedule import auto_epochs

PROBE_STREAM = 2**31


def resolve_device(cfg: TrainConfig) -> torch.device:
    """The device of this process: torchrun's (after init_process_group) or ``cfg.device``."""
    if distributed.is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return distributed.init_from_env()
    return parse_device(cfg.device, "device")


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype (None = fp32): auto is bf16 where native (CUDA from Ampere on,
    AVX512-BF16/AMX CPUs), else fp16 (with a GradScaler) on CUDA, else fp32."""
    if precision == "fp32":
        return None
    if precision == "auto":
        if bf16_supported(device):
            return torch.bfloat16
        return torch.float16 if device.type == "cuda" else None
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


def use_tf32(precision: str, device: torch.device) -> bool:
    """TF32 for the fp32 work on CUDA (the losses' fp32 regions, kNN, the probes) unless
    ``precision: fp32`` asks for full fp32; never off CUDA."""
    return device.type == "cuda" and precision != "fp32"


def set_tf32(on: bool) -> None:
    """Let (or forbid) CUDA matmuls and cuDNN convolutions in float32 use TF32 tensor cores."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


@dataclass(frozen=True)
class Plan:
    """The resolved run: ``cfg`` with its epochs filled in, and the numbers the loop needs."""

    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool
    rank: int
    world: int
    micro: int                 # images per micro-batch on this process
    local_batch: int           # images per optimizer step on this process (micro x accumulate)
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    peak_lr: float
    precision_reason: str = ""   # why amp_dtype/channels_last are what they are (simxir.train.precision)
    tf32: bool = False           # fp32 matmuls / convolutions on CUDA tensor cores (TF32)

    @property
    def main(self) -> bool:
        return self.rank == 0


def fitting_batch(batch_size: int, n_train: int, per_step: int) -> int:
    """A batch for a collection smaller than ``batch_size``: the largest power of two of at least 2
    images per process that fits ``n_train`` (and divides by ``per_step`` = processes x accumulate);
    a UserError when none does. Logged, and recorded in the run's config."""
    b = 1 << (n_train.bit_length() - 1) if n_train > 0 else 0
    while b >= 2 * per_step and b % per_step:
        b //= 2
    if b < 2 * per_step:
        raise UserError(f"batch_size: {batch_size} is larger than the {n_train} training images, and no smaller "
                        f"batch of at least 2 images per process fits them")
    log(f"batch_size {batch_size} is larger than the {n_train} training images: using {b} "
        f"(the largest power of two that fits; set batch_size to choose)")
    return b


def resolve_length(cfg: TrainConfig, n_train: int) -> TrainConfig:
    """``cfg`` with a batch that fits ``n_train`` images (:func:`fitting_batch`) and its epochs set
    (``None``: :func:`auto_epochs`), as the run will train."""
    if cfg.batch_size > n_train:
        per_step = distributed.world_size() * cfg.accumulate
        cfg = dataclasses.replace(cfg, batch_size=fitting_batch(cfg.batch_size, n_train, per_step))
    if cfg.epochs is None:
        cfg = dataclasses.replace(cfg, epochs=auto_epochs(n_train // cfg.batch_size))
    return cfg


def plan_run(cfg: TrainConfig, n_train: int, device: torch.device | None = None) -> Plan:
    """Check the config against the data and the processes (a UserError naming the field), set the
    thread count, and resolve everything else."""
    device = device or resolve_device(cfg)
    rank, world = distributed.rank(), distributed.world_size()
    check_train_config(cfg)
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
    cfg = resolve_length(cfg, n_train)
    micro = cfg.batch_size // (world * cfg.accumulate)
    if micro < 2:
        raise UserError(f"batch_size: {cfg.batch_size} over {world} processes x {cfg.accumulate} accumulation steps "
                        f"leaves {micro} image per forward pass; BatchNorm needs at least 2")
    steps_per_epoch = n_train // cfg.batch_size
    tf32 = use_tf32(cfg.precision, device)
    if device.type == "cuda":   # every step has the same shapes: let cuDNN time its kernels once
        torch.backends.cudnn.benchmark = True
        set_tf32(tf32)
    return Plan(cfg=cfg, device=device, amp_dtype=resolve_precision(cfg.precision, device), tf32=tf32,
                channels_last=resolve_channels_last(cfg.channels_last), rank=rank, world=world,
                micro=micro, local_batch=micro * cfg.accumulate, steps_per_epoch=steps_per_epoch,
                total_steps=steps_per_epoch * cfg.epochs,
                warmup_steps=int(round(cfg.schedule.warmup_epochs * steps_per_epoch)),
                peak_lr=cfg.optim.lr * (cfg.batch_size / 256 if cfg.optim.scale_lr else 1.0))
