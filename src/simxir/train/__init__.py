"""The training engine: ``train(cfg, method, dataset, augment, out_dir, resume=False)``.

DDP + SyncBatchNorm under torchrun, bf16 autocast + channels_last where supported, gradient
accumulation, SGD/AdamW/LARS with a warm-up + cosine schedule, atomic per-epoch checkpoints and
``--resume``, a nan/inf guard, an online linear probe, collapse monitors, CSV + TensorBoard logs.
"""

from simxir.errors import TrainingDiverged, TrainingInterrupted
from simxir.train.config import (
           MonitorConfig,
           OptimConfig,
           ProbeConfig,
           ScheduleConfig,
           TrainConfig,
)
from simxir.train.engine import train
from simxir.train.export import write_run_encoder
from simxir.train.model import prepare_model
from simxir.train.optim import LARS, build_optimizer
from simxir.train.schedule import lr_factor
from simxir.train.step import train_step

__all__ = ["LARS", "MonitorConfig", "OptimConfig", "ProbeConfig", "ScheduleConfig", "TrainConfig",
           "TrainingDiverged", "TrainingInterrupted", "build_optimizer", "lr_factor", "prepare_model",
           "train", "train_step", "write_run_encoder"]
