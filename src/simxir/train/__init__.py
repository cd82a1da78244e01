"""The training engine: ``train(cfg, method, dataset, augment, out_dir, resume=False)``.

DDP + SyncBatchNorm under torchrun, bf16 autocast + channels_last where supported, gradient
accumulation, SGD/AdamW/LARS with a warm-up + cosine schedule, atomic per-epoch checkpoints and
``--resume``, a nan/inf guard, an online linear probe, collapse monitors, CSV + TensorBoard logs.
"""

from simxir.train.config import MonitorConfig, OptimConfig, ProbeConfig, ScheduleConfig, TrainConfig
from simxir.train.engine import TrainingDiverged, export_encoder, prepare_model, train, train_step
from simxir.train.optim import LARS, build_optimizer
from simxir.train.schedule import lr_factor

__all__ = ["LARS", "MonitorConfig", "OptimConfig", "ProbeConfig", "ScheduleConfig", "TrainConfig",
           "TrainingDiverged", "build_optimizer", "export_encoder", "lr_factor", "prepare_model",
           "train", "train_step"]
