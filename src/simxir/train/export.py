"""What a run leaves beside its checkpoint: the trained encoder and the predictor snapshots."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save
from torch import nn

from simxir.io import atomic_save, atomic_write_bytes
from simxir.models import save_encoder


def write_run_encoder(backbone: nn.Module, run_dir: Path) -> Path:
    """``run_dir/encoder.safetensors`` and ``run_dir/encoder.pt`` (the same state_dict for torch users)
    from a CPU float32 copy of ``backbone``: :func:`simxir.models.save_encoder` for simxir's backbones;
    a user's own module's ``state_dict`` under its own key names (what ``module.load_state_dict``
    takes back), with metadata ``{"format": "module", "class": ...}``."""
    enc = copy.deepcopy(backbone).to("cpu").to(memory_format=torch.contiguous_format).float()
    state = {k: v.contiguous() for k, v in enc.state_dict().items()}
    atomic_save(state, run_dir / "encoder.pt")
    path = run_dir / "encoder.safetensors"
    if hasattr(enc, "arch"):
        save_encoder(enc, path)
    else:
        meta = {"format": "module", "class": backbone_name(enc).removeprefix("python:"),
                "feature_dim": str(getattr(enc, "feature_dim", ""))}
        atomic_write_bytes(path, save({k: v.clone() for k, v in state.items()}, metadata=meta))
    return path


def backbone_name(backbone: nn.Module) -> str:
    """What a run records as its backbone: simxir's architecture name, or ``python:module.Class``."""
    arch = getattr(backbone, "arch", None)
    return str(arch) if arch else f"python:{type(backbone).__module__}.{type(backbone).__qualname__}"


def save_predictor(weight: torch.Tensor, run_dir: Path, epoch: int) -> None:
    """``run_dir/predictor/epoch_XXXX.npy``: the linear predictor after ``epoch`` (for the analysis)."""
    buf = io.BytesIO()
    np.save(buf, weight.detach().float().cpu().numpy())
    atomic_write_bytes(run_dir / "predictor" / f"epoch_{epoch:04d}.npy", buf.getvalue())
