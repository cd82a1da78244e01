"""Label propagation (Zhu et al. 2003) and "neighbour averaging, then k-means" clustering."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse.linalg import spsolve

from simxir.dynamics.neighbourhoods import NeighbourOperator
from simxir.dynamics.steps import run
from simxir.errors import UserError


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1.0
    return out


def label_propagation(op: NeighbourOperator, labels: np.ndarray, labeled: np.ndarray,
                      method: str = "harmonic", iters: int = 1000, tol: float = 1e-8,
                      num_classes: int | None = None) -> np.ndarray:
    """Class scores (n, C) from labels known on ``labeled`` (bool mask), clamped there.

    ``"iterative"``: ``F <- P F`` then reset labeled rows to their one-hot labels, until the
    change is below ``tol`` or ``iters`` steps. ``"harmonic"``: the fixed point directly,
    ``F_u = (I - P_uu)^{-1} P_ul Y_l``. Unlabeled points with no path to a label score 0.
    """
    labels = np.asarray(labels)
    labeled = np.asarray(labeled, dtype=bool)
    if labeled.shape != (op.n,) or labels.shape[0] != op.n:
        raise UserError(f"labels/labeled: expected shape ({op.n},)")
    if not labeled.any():
        raise UserError("labeled: expected at least one labeled point")
    C = int(num_classes or labels[labeled].max() + 1)
    y = _one_hot(labels[labeled].astype(np.int64), C)
    if method == "iterative":
        f = torch.zeros(op.n, C, dtype=torch.float64)
        yl = torch.from_numpy(y)
        mask = torch.from_numpy(labeled)
        f[mask] = yl
        for _ in range(iters):
            g = op.apply(f)
            g[mask] = yl
            done = float((g - f).abs().max()) < tol
            f = g
            if done:
                break
        return f.numpy()
    if method == "harmonic":
        P = op.to_scipy()
        u = np.flatnonzero(~labeled)
        lab_idx = np.flatnonzero(labeled)
        F = np.zeros((op.n, C))
        F[lab_idx] = y
        if u.size:
            Puu = P[u][:, u]
            Pul = P[u][:, lab_idx]
            A = sp.identity(len(u), format="csc") - Puu.tocsc()
            # components without a label make A singular; regularise them to score 0
            A = A + 1e-12 * sp.identity(len(u), format="csc")
            sol = spsolve(A, Pul @ y)
            F[u] = np.asarray(sol).reshape(len(u), C)
        return F
    raise UserError(f"method: expected 'harmonic' or 'iterative', got {method!r}")


def clustering_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Accuracy under the best one-to-one matching of clusters to labels (Hungarian)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    k = int(max(y_true.max(), y_pred.max()) + 1)
    cost = np.zeros((k, k), dtype=np.int64)
    np.add.at(cost, (y_pred, y_true), 1)
    r, c = linear_sum_assignment(-cost)
    return float(cost[r, c].sum() / len(y_true))


def smooth_then_kmeans(op: NeighbourOperator, reps: np.ndarray, steps: int, n_clusters: int,
                       seed: int = 0, n_init: int = 10, spherical: bool = False) -> np.ndarray:
    """Neighbour-average ``reps`` for ``steps`` steps, then k-means; returns cluster ids."""
    f = run(op, torch.as_tensor(np.asarray(reps, dtype=np.float64)), steps, spherical=spherical,
            show_progress=False).reps
    from sklearn.cluster import KMeans  # noqa: PLC0415 - scikit-learn takes ~0.7 s to import

    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    return km.fit_predict(f.cpu().numpy())
