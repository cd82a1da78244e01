"""Diagnostics of a linear predictor ``W_p`` (bridging paper, Figures 3 and 4).

All measures are scale-free (divided by ``||W||_F``) so that runs with different weight decay or
learning rate compare; for the zero matrix they are ``nan``.

* ``asymmetry(W) = ||W - W^T||_F / ||W||_F`` (0 for a symmetric matrix, 2 for a skew-symmetric one).
* ``offdiag_energy(W) = ||W - diag(W)||_F^2 / ||W||_F^2`` (share of energy off the diagonal).
* ``dist_to_scaled_identity(W) = min_c ||W - c I||_F / ||W||_F``, reached at ``c = tr(W) / d``.
* ``eigenvalues(W)``: real parts of the eigenvalues, in descending order.

Run folders written by the training engine hold ``predictor/epoch_XXXX.npy`` (one d x d matrix per
saved epoch); :func:`load_predictor_history` reads them in epoch order.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch

from simxir.errors import UserError
from simxir.io import require_file

_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.npy$")


def as_square_matrix(w: np.ndarray | torch.Tensor, name: str = "predictor") -> np.ndarray:
    """``w`` as a float64 numpy d x d matrix, or a UserError naming ``name``."""
    if isinstance(w, torch.Tensor):
        w = w.detach().to("cpu", torch.float64).numpy()
    w = np.asarray(w)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] == 0:
        raise UserError(f"{name}: expected a square d x d matrix, got shape {tuple(w.shape)}")
    if not np.issubdtype(w.dtype, np.number) or np.iscomplexobj(w):
        raise UserError(f"{name}: expected a real-valued matrix, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if not np.isfinite(w).all():
        raise UserError(f"{name}: contains nan or inf values")
    return w


def _norm(w: np.ndarray) -> float:
    return float(np.linalg.norm(w, "fro"))


def asymmetry(w: np.ndarray | torch.Tensor) -> float:
    """``||W - W^T||_F / ||W||_F``."""
    w = as_square_matrix(w)
    n = _norm(w)
    return _norm(w - w.T) / n if n > 0 else math.nan


def offdiag_energy(w: np.ndarray | torch.Tensor) -> float:
    """``||W - diag(W)||_F^2 / ||W||_F^2``."""
    w = as_square_matrix(w)
    n2 = _norm(w) ** 2
    off = w - np.diag(np.diag(w))
    return _norm(off) ** 2 / n2 if n2 > 0 else math.nan


def scaled_identity_coefficient(w: np.ndarray | torch.Tensor) -> float:
    """The ``c`` minimising ``||W - c I||_F``: ``tr(W) / d``."""
    w = as_square_matrix(w)
    return float(np.trace(w)) / w.shape[0]


def dist_to_scaled_identity(w: np.ndarray | torch.Tensor) -> float:
    """``min_c ||W - c I||_F / ||W||_F`` (closed form ``c = tr(W) / d``)."""
    w = as_square_matrix(w)
    n = _norm(w)
    if n == 0:
        return math.nan
    c = np.trace(w) / w.shape[0]
    return _norm(w - c * np.eye(w.shape[0])) / n


def eigenvalues(w: np.ndarray | torch.Tensor) -> np.ndarray:
    """Real parts of the eigenvalues of ``W``, descending."""
    w = as_square_matrix(w)
    return np.sort(np.linalg.eigvals(w).real)[::-1].copy()


def predictor_diagnostics(w: np.ndarray | torch.Tensor) -> dict[str, float | list[float]]:
    """All diagnostics of one matrix as a JSON-ready dict (keys as in ``simxir analyze --json``)."""
    w = as_square_matrix(w)
    return {
        "asymmetry": asymmetry(w),
        "offdiag_energy": offdiag_energy(w),
        "dist_to_scaled_identity": dist_to_scaled_identity(w),
        "eigenvalues": [float(v) for v in eigenvalues(w)],
    }


def load_predictor(path: str | Path, label: str = "") -> np.ndarray:
    """Read a d x d predictor matrix from a ``.npy`` file (``label``, e.g. "--predictor", prefixes errors)."""
    path = Path(path)
    name = f"{label} {path}".strip()
    require_file(path, "a d x d predictor matrix saved with numpy.save", label)
    try:
        w = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad files
        raise UserError(f"{name}: not a readable .npy array ({exc.__class__.__name__})") from None
    if not isinstance(w, np.ndarray):
        raise UserError(f"{name}: expected a .npy array, got an archive of several arrays")
    return as_square_matrix(w, name=name)


def load_predictor_history(run_dir: str | Path) -> tuple[list[int], list[np.ndarray]]:
    """``(epochs, matrices)`` from ``run_dir/predictor/epoch_XXXX.npy``, sorted by epoch.

    Returns empty lists when the folder has no predictor snapshots (e.g. a method without a linear
    predictor); matrices of differing shapes are an error.
    """
    folder = Path(run_dir) / "predictor"
    if not folder.is_dir():
        return [], []
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _EPOCH_FILE.match(p.name)))
    epochs = [e for e, _ in found]
    mats = [load_predictor(p) for _, p in found]
    if mats and any(m.shape != mats[0].shape for m in mats):
        raise UserError(f"{folder}: predictor snapshots have different shapes")
    return epochs, mats


def eigenvalue_trajectories(mats: list[np.ndarray]) -> np.ndarray:
    """``(n_epochs, d)`` array: row ``k`` holds the sorted (descending) real eigenvalues of ``mats[k]``."""
    if not mats:
        return np.zeros((0, 0))
    return np.stack([eigenvalues(m) for m in mats])


def diagnostics_history(mats: list[np.ndarray]) -> dict[str, list[float]]:
    """Scalar diagnostics per snapshot: ``{"asymmetry": [...], "offdiag_energy": [...], ...}``."""
    return {
        "asymmetry": [asymmetry(m) for m in mats],
        "offdiag_energy": [offdiag_energy(m) for m in mats],
        "dist_to_scaled_identity": [dist_to_scaled_identity(m) for m in mats],
    }
