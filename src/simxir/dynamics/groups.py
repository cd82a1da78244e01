"""Neighbour-connected groups (Definition 4.1): connected components of the neighbourhood graph.

Components are taken with *weak* connectivity (a path of neighbourhoods in either direction), so
every neighbourhood of a member lies inside its group: groups are closed under the dynamics.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse.csgraph import connected_components

from simxir.dynamics.neighbourhoods import NeighbourOperator
from simxir.errors import UserError


def components(op: NeighbourOperator) -> np.ndarray:
    """Group label (0..G-1) of every point; groups numbered by their smallest member."""
    _, labels = connected_components(op.to_scipy(), directed=True, connection="weak")
    # renumber by first occurrence so labels are stable and ordered
    _, first = np.unique(labels, return_index=True)
    order = np.argsort(first)
    remap = np.empty_like(order)
    remap[order] = np.arange(len(order))
    return remap[labels].astype(np.int64)


def is_closed(op: NeighbourOperator, labels: np.ndarray) -> bool:
    """Whether every neighbourhood N(x) lies inside x's group (the theorems' setting)."""
    rows = np.repeat(np.arange(op.n), op.degrees())
    return bool((labels[rows] == labels[op.indices]).all())


def check_labels(labels: np.ndarray, n: int, name: str = "groups") -> np.ndarray:
    """Validate group labels: (n,) integers; returns them renumbered to 0..G-1."""
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise UserError(f"{name}: expected shape ({n},) (one label per point), got {lab.shape}")
    if not np.issubdtype(lab.dtype, np.integer):
        if np.issubdtype(lab.dtype, np.floating) and np.all(np.mod(lab, 1) == 0):
            lab = lab.astype(np.int64)
        else:
            raise UserError(f"{name}: expected integer labels, got dtype {lab.dtype}")
    _, inv = np.unique(lab, return_inverse=True)
    return inv.astype(np.int64)
