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

from simxir.config import flatten
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


def resume_recipe(out: str | Path, resume: bool, recipe: str | None) -> str | None:
    """The recipe of a run: ``recipe``; with ``resume`` (which needs ``out/checkpoint.pt``) and no
    recipe, the ``out/config.yaml`` the run was started with."""
    if not resume:
        return recipe
    require_checkpoint(Path(out))
    saved = Path(out) / "config.yaml"
    return str(saved) if recipe is None and saved.is_file() else recipe


def load_training_checkpoint(run_dir: Path) -> dict[str, Any]:
    """Read ``run_dir/checkpoint.pt`` (weights_only); a missing or foreign file is a UserError."""
    path = require_checkpoint(run_dir)
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict) or ckpt.get("version") != VERSION or "model" not in ckpt:
        raise UserError(f"{path}: not a simxir training checkpoint (version {VERSION})")
    return ckpt


def restore(ckpt: dict[str, Any], method: torch.nn.Module, probe: torch.nn.Module | None,
            optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
            steps_per_epoch: int) -> dict[str, Any]:
    """Load a training checkpoint (:func:`load_training_checkpoint`) into the objects and the RNGs;
    returns its ``epoch``, ``step``, ``history`` and ``step_log``. The optimizer keeps the settings
    it was built with (the resumed run's config: a changed ``optim.lr`` applies) and takes the
    checkpoint's state. A checkpoint whose step count does
    not fit ``steps_per_epoch`` (the batch size or the data changed) is a UserError."""
    method.load_state_dict(ckpt["model"])
    if probe is not None and ckpt.get("probe") is not None:
        probe.load_state_dict(ckpt["probe"])
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(ckpt["optimizer"])   # its state (momentum, Adam moments) ...
    for group, settings in zip(optimizer.param_groups, fresh):
        group.update(settings)                     # ... under this run's settings (lr, weight decay, betas)
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    epoch, step = int(ckpt["epoch"]), int(ckpt["step"])
    if epoch * steps_per_epoch != step:
        raise UserError(f"--resume: checkpoint at step {step} does not match {steps_per_epoch} "
                        f"steps per epoch x {epoch} epochs; batch_size or data changed")
    return {"epoch": epoch, "step": step, "history": list(ckpt["history"]),
            "step_log": list(ckpt.get("step_log", []))}


# what a resumed run may not change: the model, the data, the batch geometry, the optimizer family
FIXED_ON_RESUME = ("method_name", "backbone", "data", "image_size", "batch_size", "accumulate", "seed", "optim.name")
FIXED_PREFIXES = ("method.", "vit.")


def resume_changes(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The settings a resumed run changes, as ``key old -> new`` lines; a UserError naming every
    change that cannot happen mid-run (:data:`FIXED_ON_RESUME`, ``method.*``, ``vit.*``)."""
    old, new = flatten(saved), flatten(current)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    fixed = [k for k in changed if k in FIXED_ON_RESUME or k.startswith(FIXED_PREFIXES)]
    if fixed:
        what = ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in fixed)
        raise UserError(f"--resume: cannot change {what} in the middle of a run; drop these overrides, or start "
                        f"a new run in another folder")
    return [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed]
