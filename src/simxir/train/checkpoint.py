"""Per-epoch training checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint (``RUN_DIR/checkpoint.pt``) holds only tensors, numbers, strings, lists and dicts:
``model`` (the method's state_dict), ``probe``, ``optimizer``, ``scaler``, ``epoch`` (epochs
completed), ``step`` (optimizer steps done), ``rng`` (torch/cuda/numpy/python states), ``history``
(per-epoch metrics), ``step_log`` (rows of steps.csv) and ``config``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simxir.errors import UserError
from simxir.io import atomic_save, load_checkpoint

CHECKPOINT = "checkpoint.pt"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """All random generator states, as tensors and plain Python values."""
    np_state = np.random.get_state()
    py_state = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": py_state[2]},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """Write ``state`` (plus version and RNG states) to ``run_dir/checkpoint.pt`` atomically."""
    path = Path(run_dir) / CHECKPOINT
    atomic_save({"version": VERSION, "rng": rng_state(), **state}, path)
    return path


def require_checkpoint(run_dir: Path) -> Path:
    """``run_dir/checkpoint.pt``, or a UserError naming it when there is none to resume from."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        where = "no such folder" if not Path(run_dir).exists() else "no checkpoint.pt in it"
        raise UserError(f"--resume: {path}: no checkpoint to resume ({where}); start the run "
                        f"without --resume")
    return path


def load_training_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/checkpoint.pt`` (weights_only); a missing or foreign file is a UserError."""
    path = require_checkpoint(run_dir)
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION or "model" not in ckpt:
        raise UserError(f"{path}: not a simxir training checkpoint (version {VERSION})")
    return ckpt
