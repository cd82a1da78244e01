"""Neighbourhoods as sparse row-stochastic operators ``P`` (n x n) built once from ``inputs``.

``P[i, j] = p(x_j | x_i)``: the weight of neighbour ``x_j`` in the average at ``x_i``. Rules:

- radius: ``N(x) = {x' : ||x' - x|| < eps}`` (strict, the paper's pseudocode; ``closed=True``
  gives ``<=``). ``x`` itself is always included (``||x - x|| = 0 < eps``).
- kNN: ``N(x)`` = the ``k`` nearest points *counting x itself* (so ``k - 1`` others; as
  scikit-learn's ``kneighbors_graph(include_self=True)``). Ties at the k-th distance are broken
  by the search backend.
- weights: ``"uniform"`` (plain mean, eq. 2.4) or ``"gaussian"`` (``exp(-d^2 / 2 sigma^2)`` on
  the same graph, rows renormalised; the label-propagation kernel of Zhu et al. 2003).

Search: exact scipy ``cKDTree`` for low dimension, exact chunked torch matmul + top-k for high
dimension (runs on the inputs' device), approximate faiss HNSW when ``index="faiss"`` (optional,
only if installed). Memory is O(nnz) = O(n k) for kNN; a radius graph holds every pair < eps.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
from scipy.spatial import cKDTree

from simxir.errors import UserError

Weights = Literal["uniform", "gaussian"]
Index = Literal["auto", "kdtree", "torch", "faiss"]

_KDTREE_MAX_DIM = 16


@dataclass
class NeighbourOperator:
    """A sparse row-stochastic operator in CSR form (numpy arrays on the host).

    ``apply(f)`` computes ``P @ f`` with torch CSR sparse-dense matmul on ``f``'s device and
    dtype (the operator is converted once per device/dtype and cached).
    """

    indptr: np.ndarray    # int64 (n + 1,)
    indices: np.ndarray   # int64 (nnz,)
    values: np.ndarray    # float64 (nnz,), each row sums to 1
    rule: str = ""
    backend: str = "auto"   # CPU matmul: "auto" | "torch" | "scipy" (see apply)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def degrees(self) -> np.ndarray:
        """Number of points in each neighbourhood |N(x)|."""
        return np.diff(self.indptr)

    def to_scipy(self) -> sp.csr_matrix:
        return sp.csr_matrix((self.values, self.indices, self.indptr), shape=(self.n, self.n))

    def to_torch(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        key = (str(torch.device(device)), dtype)
        if key not in self._cache:
            # int32 indices make torch's CSR kernel ~1.7x faster on CPU when they fit
            it = np.int32 if self.nnz < 2**31 - 1 else np.int64
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
                self._cache[key] = torch.sparse_csr_tensor(
                    torch.from_numpy(self.indptr.astype(it)), torch.from_numpy(self.indices.astype(it)),
                    torch.from_numpy(self.values).to(dtype), size=(self.n, self.n),
                    check_invariants=False,
                ).to(device)
        return self._cache[key]

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """``P @ f`` for ``f`` of shape (n, d), on ``f``'s device and dtype.

        CPU backend (``backend="auto"``): scipy for small work (nnz * d < 2^22), where torch's
        threaded kernel pays a fixed synchronisation cost (~20 ms on a loaded 2-core machine),
        torch CSR (int32 indices) above that; CUDA always uses torch CSR.
        """
        if f.ndim != 2 or f.shape[0] != self.n:
            raise UserError(f"reps: expected shape ({self.n}, d) (one row per input point), got {tuple(f.shape)}")
        use_scipy = f.device.type == "cpu" and f.dtype in (torch.float32, torch.float64) and (
            self.backend == "scipy" or (self.backend == "auto" and self.nnz * f.shape[1] < 1 << 22))
        if use_scipy:
            key = ("scipy", f.dtype)
            if key not in self._cache:
                self._cache[key] = self.to_scipy().astype(np.float32 if f.dtype == torch.float32 else np.float64)
            return torch.from_numpy(np.ascontiguousarray(self._cache[key] @ f.detach().numpy()))
        return self.to_torch(f.device, f.dtype) @ f

    def nbytes(self) -> int:
        return self.indptr.nbytes + self.indices.nbytes + self.values.nbytes


def _as_numpy(inputs: np.ndarray | torch.Tensor) -> np.ndarray:
    x = inputs.detach().cpu().numpy() if isinstance(inputs, torch.Tensor) else np.asarray(inputs)
    if x.ndim != 2 or x.shape[0] == 0:
        raise UserError(f"inputs: expected a non-empty (n, d) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise UserError("inputs: contains NaN or infinite values")
    return x


def _finish(rows: np.ndarray, cols: np.ndarray, dists: np.ndarray, n: int, weights: Weights,
            sigma: float | None, rule: str) -> NeighbourOperator:
    """Sort (row, col, dist) triplets into CSR and turn distances into row-stochastic weights."""
    order = np.lexsort((cols, rows))
    rows, cols, dists = rows[order], cols[order], dists[order]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return _weights_csr(indptr, cols.astype(np.int64), dists, weights, sigma, rule)


def _weights_csr(indptr: np.ndarray, cols: np.ndarray, dists: np.ndarray, weights: Weights,
                 sigma: float | None, rule: str) -> NeighbourOperator:
    n = len(indptr) - 1
    deg = np.diff(indptr)
    if weights == "uniform":
        vals = np.repeat(1.0 / deg, deg)
    elif weights == "gaussian":
        if sigma is None:
            nz = dists[dists > 0]
            sigma = float(np.median(nz)) if nz.size else 1.0
        if sigma <= 0:
            raise UserError(f"sigma: expected a positive kernel width, got {sigma}")
        w = np.exp(-(dists.astype(np.float64) ** 2) / (2.0 * sigma * sigma))
        rowsum = np.add.reduceat(w, indptr[:-1]) if n else w
        vals = w / np.repeat(rowsum, deg)
        rule += f", gaussian sigma={sigma:.4g}"
    else:
        raise UserError(f"weights: expected 'uniform' or 'gaussian', got {weights!r}")
    return NeighbourOperator(indptr, cols, vals.astype(np.float64), rule=rule)


def radius_operator(inputs: np.ndarray | torch.Tensor, eps: float, closed: bool = False,
                    weights: Weights = "uniform", sigma: float | None = None) -> NeighbourOperator:
    """Radius rule ``N(x) = {x' : ||x' - x|| < eps}`` (``<=`` with ``closed=True``), exact.

    Pairs come from a KD-tree queried slightly beyond ``eps``; the rule is then applied to
    distances computed as ``np.linalg.norm(x' - x)``, the pseudocode's own formula, so the
    boundary is decided exactly as a literal loop would decide it.
    """
    if not eps > 0:
        raise UserError(f"eps: expected a positive radius, got {eps}")
    x = _as_numpy(inputs)
    n = x.shape[0]
    tree = cKDTree(x)
    pairs = tree.query_pairs(eps * (1 + 1e-9) + 1e-300, output_type="ndarray")
    i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d = np.linalg.norm(x[j] - x[i], axis=1)
    keep = d <= eps if closed else d < eps
    i, j, d = i[keep], j[keep], d[keep]
    selfs = np.arange(n, dtype=np.int64)
    rows = np.concatenate([i, j, selfs])
    cols = np.concatenate([j, i, selfs])
    dists = np.concatenate([d, d, np.zeros(n)])
    rule = f"radius {'<=' if closed else '<'} {eps:g}"
    return _finish(rows, cols, dists, n, weights, sigma, rule)


def _knn_torch(x: torch.Tensor, k: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact kNN by chunked ||a||^2 - 2ab + ||b||^2 and top-k (on x's device)."""
    sq = (x * x).sum(1)
    idx_out, d_out = [], []
    for s in range(0, x.shape[0], chunk):
        q = x[s:s + chunk]
        d2 = (sq[s:s + chunk, None] - 2.0 * q @ x.T + sq[None, :]).clamp_min_(0)
        ar = torch.arange(q.shape[0], device=x.device)
        d2[ar, ar + s] = -1.0  # self first, even among exact duplicates
        vals, idx = torch.topk(d2, k, dim=1, largest=False)
        idx_out.append(idx)
        d_out.append(vals.clamp_min(0).sqrt())
    return torch.cat(idx_out), torch.cat(d_out)


def _knn_faiss(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        import faiss  # type: ignore[import-not-found]  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise UserError("index='faiss': faiss is not installed (pip install faiss-cpu)") from None
    xf = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexHNSWFlat(xf.shape[1], 32)
    index.hnsw.efConstruction = 64
    index.add(xf)
    index.hnsw.efSearch = max(64, 2 * k)
    d2, idx = index.search(xf, k)
    return idx.astype(np.int64), np.sqrt(np.maximum(d2, 0)).astype(np.float64)


def knn_indices(inputs: np.ndarray | torch.Tensor, k: int, index: Index = "auto",
                workers: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) neighbour indices (self in column 0) and distances; see :func:`knn_operator`."""
    x_t = inputs if isinstance(inputs, torch.Tensor) else None
    x = _as_numpy(inputs)
    n, dim = x.shape
    if not 1 <= k <= n:
        raise UserError(f"k: expected 1 <= k <= n={n}, got {k}")
    if index == "auto":
        index = "kdtree" if dim <= _KDTREE_MAX_DIM else "torch"
    if index == "kdtree":
        d, idx = cKDTree(x).query(x, k=k, workers=workers)
        d, idx = d.reshape(n, k), idx.reshape(n, k).astype(np.int64)
    elif index == "torch":
        t = x_t.detach().to(torch.float64) if x_t is not None else torch.from_numpy(x.astype(np.float64))
        it, dt = _knn_torch(t, k)
        idx, d = it.cpu().numpy().astype(np.int64), dt.cpu().numpy()
    elif index == "faiss":
        idx, d = _knn_faiss(x, k)
    else:
        raise UserError(f"index: expected auto, kdtree, torch or faiss, got {index!r}")
    # Make sure x itself is in N(x) (duplicates or an approximate index may have left it out).
    rows = np.arange(n)
    is_self = idx == rows[:, None]
    has_self = is_self.any(1)
    swap = has_self & ~is_self[:, 0]
    if swap.any():  # self found but not first (an exact duplicate came first): swap it to col 0
        r = np.flatnonzero(swap)
        pos = is_self[r].argmax(1)
        idx[r, pos], idx[r, 0] = idx[r, 0], idx[r, pos]
        d[r, pos], d[r, 0] = d[r, 0], d[r, pos]
    if not has_self.all():
        bad = ~has_self
        idx[bad, 1:] = idx[bad, :-1]
        d[bad, 1:] = d[bad, :-1]
        idx[bad, 0] = rows[bad]
        d[bad, 0] = 0.0
    return idx, d


def knn_operator(inputs: np.ndarray | torch.Tensor, k: int, weights: Weights = "uniform",
                 sigma: float | None = None, index: Index = "auto") -> NeighbourOperator:
    """kNN rule: ``N(x)`` = the ``k`` nearest points including ``x`` itself (``k - 1`` others).

    ``index``: ``"kdtree"`` (exact, d <= 16), ``"torch"`` (exact, any d, O(n^2 d) time,
    chunked memory), ``"faiss"`` (approximate HNSW, needs faiss), ``"auto"`` picks exact.
    """
    idx, d = knn_indices(inputs, k, index=index)
    n = idx.shape[0]
    order = np.argsort(idx, axis=1)  # sorted columns: better memory access in the matmul
    idx, d = np.take_along_axis(idx, order, 1), np.take_along_axis(d, order, 1)
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    rule = f"knn k={k} (self included)"
    return _weights_csr(indptr, idx.reshape(-1), d.reshape(-1), weights, sigma, rule)


def operator_from_matrix(w: sp.spmatrix | np.ndarray) -> NeighbourOperator:
    """Row-normalise any non-negative (n x n) weight matrix with a positive diagonal or rows."""
    m = sp.csr_matrix(w, dtype=np.float64)
    if m.shape[0] != m.shape[1]:
        raise UserError(f"weight matrix: expected square, got {m.shape}")
    if (m.data < 0).any():
        raise UserError("weight matrix: expected non-negative weights")
    rs = np.asarray(m.sum(1)).ravel()
    if (rs <= 0).any():
        raise UserError("weight matrix: every row needs a positive weight (include self)")
    m = sp.diags(1.0 / rs) @ m
    m = sp.csr_matrix(m)
    m.sort_indices()
    return NeighbourOperator(m.indptr.astype(np.int64), m.indices.astype(np.int64),
                             m.data.astype(np.float64), rule="custom")
