"""What a run leaves beside its checkpoint: the trained encoder and the predictor snapshots."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from simxir.io import atomic_save, atomic_write_bytes
from simxir.models import save_encoder


def write_run_encoder(backbone: nn.Module, run_dir: Path) -> Path:
    """``run_dir/encoder.safetensors`` (:func:`simxir.models.save_encoder`) and ``run_dir/encoder.pt``
    (the same state_dict for torch users) from a CPU float32 copy of ``backbone``."""
    enc = copy.deepcopy(backbone).to("cpu").to(memory_format=torch.contiguous_format).float()
    atomic_save({k: v.contiguous() for k, v in enc.state_dict().items()}, run_dir / "encoder.pt")
    path = run_dir / "encoder.safetensors"
    save_encoder(enc, path)
    return path


def save_predictor(weight: torch.Tensor, run_dir: Path, epoch: int) -> None:
    """``run_dir/predictor/epoch_XXXX.npy``: the linear predictor after ``epoch`` (for the analysis)."""
    buf = io.BytesIO()
    np.save(buf, weight.detach().float().cpu().numpy())
    atomic_write_bytes(run_dir / "predictor" / f"epoch_{epoch:04d}.npy", buf.getvalue())
