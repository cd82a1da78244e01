"""Training configuration: what a pretraining recipe (``recipes/pretrain/*.yaml``) holds.

``TrainConfig`` is filled by :func:`simxir.config.load_recipe`; ``method`` is a free mapping of the
chosen method's config fields (checked against ``simxir.methods.CONFIGS[name]`` by the command),
addressed on the command line as ``method.KEY=VALUE``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from simxir.augment import MultiCropConfig
from simxir.data.stream import LoaderConfig
from simxir.errors import UserError


@dataclass
class OptimConfig:
    """Optimizer. The learning rate used is ``lr * batch_size / 256`` (global batch) when ``scale_lr``."""

    name: Literal["sgd", "adamw", "lars"] = "sgd"
    lr: float = 0.05
    scale_lr: bool = True
    weight_decay: float = 5e-4
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, ...] = (0.9, 0.999)
    eta: float = 0.02                 # LARS trust coefficient (BYOL/solo-learn use 0.02 or 1e-3)
    clip_lars_lr: bool = False        # LARS: cap the adapted lr at the scheduled lr (solo-learn)
    exclude_bias_norm: bool = True    # bias/norm (1-d) params: no weight decay, no LARS adaptation
    clip_grad: float = 0.0            # max norm of the method's gradients (0: off; DINO 3.0), no host sync
    clip_mode: Literal["global", "per_param"] = "global"   # one norm over all, or each parameter's own (DINO's)
    weight_decay_end: float | None = None   # cosine per step from weight_decay to this (DINO 0.04 -> 0.4)


@dataclass
class ScheduleConfig:
    """Per-step learning rate: linear warm-up then cosine decay to ``final_lr_ratio * lr``."""

    name: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    final_lr_ratio: float = 0.0
    # method values on a per-step cosine, {key: [start, end]} of the method's config (e.g. moco's
    # {"temperature": [0.2, 0.1]}); set on the method's config before every step
    method: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class ProbeConfig:
    """Online linear probe on detached backbone features (own param group, no LARS, no wd)."""

    enabled: bool = True
    lr: float = 0.1
    weight_decay: float = 0.0


@dataclass
class ViTConfig:
    """Options of ``vit-*`` backbones (other backbones refuse non-default values)."""

    representation: Literal["cls", "mean", "cls+mean"] = "cls"   # the feature evaluated and trained on
    registers: int = 0                 # register tokens (DINOv2 with registers: 4)
    layer_scale: float | None = None   # LayerScale init (DINOv2: 1e-5); None: no layer scale
    attn: Literal["sdpa", "softmax"] = "sdpa"
    drop_path: float = 0.0             # stochastic depth, rising linearly to this over the blocks (DINO: 0.1)

    def options(self) -> dict[str, Any]:
        """The non-default values, as ``build_backbone`` keyword arguments."""
        default = ViTConfig()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}


BACKENDS = ("csv", "tensorboard", "wandb", "mlflow")


@dataclass
class LoggingConfig:
    """Where a run's metrics, config and final results go besides metrics.csv / steps.csv (always
    written): ``backends`` from csv, tensorboard (also switched off by ``tensorboard=false``), wandb,
    mlflow (extras: ``pip install 'simxir[wandb]'`` / ``'simxir[mlflow]'``)."""

    backends: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])
    project: str = "simxir"           # the W&B project / MLflow experiment
    wandb_mode: str = ""              # "" (W&B's own setting, WANDB_MODE), online, offline, disabled


@dataclass
class MonitorConfig:
    """Per-epoch monitors on a fixed, un-augmented eval set (the first ``eval_size`` test images).

    A run is marked ``collapsed`` when, at the last epoch, the std of the l2-normalized embeddings
    (projector outputs, or backbone features when the method has no ``project``) falls below
    ``collapse_std_ratio / sqrt(d)`` or the effective rank of backbone features below ``collapse_erank``,
    or, for methods whose loss is scale-sensitive (``Method.scale_sensitive``: an unnormalized l2
    term, e.g. bridge without STD), the last epoch's mean batch std of the embeddings the loss
    compares (``z_spread``, training mode) falls below ``collapse_spread_ratio`` times its value at
    the first step (scale collapse: outputs shrinking towards zero, which the normalized std cannot
    see; the 0.1 default and what it was measured on: results/analysis/README.md).
    """

    every: int = 1                     # epochs between monitor/probe evaluations (last epoch always)
    eval_size: int = 512
    eval_batch_size: int = 256
    collapse_std_ratio: float = 0.05
    collapse_erank: float = 1.5
    collapse_spread_ratio: float = 0.1
    save_predictor: bool = True        # RUN/predictor/epoch_XXXX.npy every epoch (when the method has one)
    knn_every: int = 0                 # epochs between kNN monitors (simxir pretrain; 0: off; last epoch always)
    knn_k: int = 20                    # neighbours of the kNN monitor (solo-learn's default)
    knn_train_size: int = 10000        # train images in its bank, evenly spaced (0: all)


@dataclass
class TrainConfig:
    """Everything ``simxir pretrain`` needs; ``train()`` ignores data/backbone/augment (given built)."""

    method_name: str = ""             # optional: the method a recipe was written for
    data: str = "digits"
    eval_data: str = ""               # a labelled spec for evaluation (monitors, before/after); "": data's own
    backbone: str = "convnet-small"
    zero_init_residual: bool = False  # ResNets: each residual branch's last BN weight starts at 0 (the bridging
                                      # paper's and its official code's ResNet-50)
    vit: ViTConfig = field(default_factory=ViTConfig)   # ViT backbones only (vit.representation=...)
    augment: str = "auto"             # auto: by image size (tiny <= 16 px, simsiam-cifar <= 64, byol-imagenet)
    multicrop: MultiCropConfig = field(default_factory=MultiCropConfig)   # views per image (local crops)
    image_size: int = 0               # crop size; 0: the stored size in memory, 224 for streamed folders
    epochs: int | None = None         # None: auto_epochs (10, more for small data: >= 150 steps)
    batch_size: int = 256             # global batch (all processes, all accumulation steps)
    accumulate: int = 1               # gradient accumulation steps per optimizer step
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    device: str = "auto"              # auto | cpu | cuda | cuda:N (torchrun picks LOCAL_RANK)
    threads: int = 0                  # intra-op CPU threads (torch.set_num_threads); 0: torch's default
    data_on_device: bool = True       # move the whole uint8 train set to the device once
    find_unused_parameters: bool = False
    log_every: int = 10               # steps between step-log rows (steps.csv) and bar updates
    checkpoint_interval_s: float = 30.0   # at most one checkpoint.pt per this many seconds, always
                                      # after the first and the last epoch; 0: after every epoch
    tensorboard: bool = True          # write TensorBoard events when tensorboard is importable
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    method: dict[str, Any] = field(default_factory=dict)


def _finite(v: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def check_train_config(cfg: TrainConfig) -> None:
    """Every number's range, checked where the config enters the engine, so that torch never sees a
    bad one; a UserError naming the key, the value and what was expected."""
    o, sc, mon, pr = cfg.optim, cfg.schedule, cfg.monitor, cfg.probe
    unknown = [b for b in cfg.logging.backends if b not in BACKENDS]
    if unknown or not isinstance(cfg.logging.backends, list):
        raise UserError(f"logging.backends: expected a list of {', '.join(BACKENDS)}, got {cfg.logging.backends}")
    if cfg.logging.wandb_mode not in ("", "online", "offline", "disabled"):
        raise UserError(f"logging.wandb_mode: expected online, offline or disabled, got {cfg.logging.wandb_mode!r}")
    rules = [
        ("optim.lr", o.lr, _finite(o.lr) and o.lr >= 0, "a finite number >= 0"),
        ("optim.weight_decay", o.weight_decay, _finite(o.weight_decay) and o.weight_decay >= 0, "a finite number >= 0"),
        ("optim.momentum", o.momentum, _finite(o.momentum) and 0 <= o.momentum < 1, "a number in [0, 1)"),
        ("optim.betas", list(o.betas), len(o.betas) == 2 and all(_finite(b) and 0 <= b < 1 for b in o.betas),
         "two numbers in [0, 1)"),
        ("optim.eta", o.eta, _finite(o.eta) and o.eta > 0, "a finite number > 0"),
        ("schedule.warmup_epochs", sc.warmup_epochs, _finite(sc.warmup_epochs) and sc.warmup_epochs >= 0,
         "a finite number >= 0"),
        ("schedule.final_lr_ratio", sc.final_lr_ratio, _finite(sc.final_lr_ratio) and 0 <= sc.final_lr_ratio <= 1,
         "a number in [0, 1]"),
        ("probe.lr", pr.lr, _finite(pr.lr) and pr.lr >= 0, "a finite number >= 0"),
        ("probe.weight_decay", pr.weight_decay, _finite(pr.weight_decay) and pr.weight_decay >= 0,
         "a finite number >= 0"),
        ("log_every", cfg.log_every, cfg.log_every >= 1, "an integer >= 1"),
        ("checkpoint_interval_s", cfg.checkpoint_interval_s,
         _finite(cfg.checkpoint_interval_s) and cfg.checkpoint_interval_s >= 0, "a finite number >= 0"),
        ("monitor.every", mon.every, mon.every >= 1, "an integer >= 1"),
        ("monitor.eval_size", mon.eval_size, mon.eval_size >= 2, "an integer >= 2 (images the monitors see)"),
        ("monitor.eval_batch_size", mon.eval_batch_size, mon.eval_batch_size >= 1, "an integer >= 1"),
    ]
    for key, value, ok, expected in rules:
        if not ok:
            raise UserError(f"{key}: expected {expected}, got {value}")
