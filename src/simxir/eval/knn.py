"""k-nearest-neighbour evaluation of frozen features: every k and both metrics in one blocked pass.

For each chunk of test features we compute ONE matrix product ``test_chunk @ train.T`` and derive
from it both the cosine similarity ``<a,b>/(|a||b|)`` (cosine distance ``2 - 2 cos``, so the
nearest neighbours are those of largest similarity) and the squared Euclidean distance
``|a|^2 - 2<a,b> + |b|^2``. One ``topk(max(ks))`` per metric gives the sorted neighbour lists from
which every k is scored, so memory is bounded by ``chunk_size * num_train`` and the train set is
read once, not once per k.

Majority vote (the SimXIR paper's kNN, "knn"): among the k nearest neighbours each class gets one
vote per neighbour; the class with the most votes wins. **Ties**: when several classes share the
largest vote count, the prediction is the tied class that owns the nearest neighbour, i.e. walk
the neighbour list from the nearest outwards and return the label of the first neighbour whose
class is among the tied ones. (Neighbours at exactly equal distance are ordered as
``torch.topk`` returns them.)

Weighted vote ("knn_weighted", solo-learn's ``WeightedKNNClassifier`` and InstDisc): over the k
nearest neighbours by cosine similarity ``s_i`` each neighbour adds ``exp(s_i / T)`` to its class
(T = 0.07 by default); the class with the largest sum wins (exact ties: the smallest class index).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from simxir.errors import UserError
from simxir.progress import progress

DEFAULT_KS: tuple[int, ...] = (5, 7, 11, 15, 17, 21)
METRICS: tuple[str, ...] = ("cosine", "euclidean")
#: elements of one (chunk x train) score matrix; at most two live at a time (2 x 128 MiB in fp32)
DEFAULT_BLOCK_ELEMENTS = 1 << 25


def block_elements(device: torch.device) -> int:
    """Elements of one (chunk x train) score matrix: on CUDA a quarter of the free device memory
    shared by the two live buffers (float32), at least the CPU's :data:`DEFAULT_BLOCK_ELEMENTS`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(DEFAULT_BLOCK_ELEMENTS, int(0.25 * free) // (2 * 4))
    return DEFAULT_BLOCK_ELEMENTS


def default_chunk(n_train: int, n_test: int, elements: int) -> int:
    """Test rows per block: near ``elements / n_train``, all blocks of equal size."""
    chunk = max(1, elements // n_train)
    n_blocks = -(-n_test // chunk)
    return max(1, -(-n_test // max(1, n_blocks)))


def knn_peak_bytes(n_train: int, n_test: int, dim: int, chunk: int) -> int:
    """Peak device memory of :func:`knn_predict` (float32): train and test features, the train
    norms (2 vectors) and the two (chunk x train) buffers. 1.28M x 2048 train features vs 50k
    queries: 10.5 GB + 0.4 GB + 2 x chunk x 5.1 MB (chunk ~1,700 with 69 GB free: ~28 GB in all)."""
    return 4 * (n_train * dim + n_test * dim + 2 * n_train + 2 * chunk * n_train)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401, PLC0415 - optional dependency
    except ImportError:
        return False
    return True


def _check_inputs(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                  test_y: torch.Tensor | None, ks: Sequence[int], metrics: Sequence[str]) -> None:
    if train_f.ndim != 2 or test_f.ndim != 2:
        raise UserError(f"features: expected 2-D (N, d) arrays, got train {tuple(train_f.shape)} "
                        f"and test {tuple(test_f.shape)}")
    if train_f.shape[1] != test_f.shape[1]:
        raise UserError(f"features: train and test feature dims differ ({train_f.shape[1]} vs {test_f.shape[1]})")
    if train_y.ndim != 1 or train_y.shape[0] != train_f.shape[0]:
        raise UserError(f"train labels: expected shape ({train_f.shape[0]},), got {tuple(train_y.shape)}")
    if test_y is not None and (test_y.ndim != 1 or test_y.shape[0] != test_f.shape[0]):
        raise UserError(f"test labels: expected shape ({test_f.shape[0]},), got {tuple(test_y.shape)}")
    for y, name in ((train_y, "train"), (test_y, "test")):
        if y is None:
            continue
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise UserError(f"{name} labels: expected integer class indices, got dtype {y.dtype}")
        if y.numel() and int(y.min()) < 0:
            raise UserError(f"{name} labels: expected class indices >= 0, got {int(y.min())}")
    if train_f.shape[0] == 0:
        raise UserError("train features: expected at least one sample, got 0")
    if not ks:
        raise UserError("--knn: expected at least one k")
    for k in ks:
        if int(k) < 1:
            raise UserError(f"--knn: expected positive integers, got k={k}")
        if int(k) > train_f.shape[0]:
            raise UserError(f"--knn: k={k} exceeds the number of train samples ({train_f.shape[0]})")
    for m in metrics:
        if m not in METRICS:
            raise UserError(f"metric: expected one of {list(METRICS)}, got {m!r}")


def _torch_neighbours(train_f: torch.Tensor, test_f: torch.Tensor, kmax: int, need_cos: bool,
                      need_euc: bool, chunk_size: int, show_progress: bool
                      ) -> Iterator[tuple[int, int, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]:
    """Yield ``(start, end, cos_sim_topk, cos_idx, euc_idx)`` per test chunk (sorted nearest first)."""
    eps = 1e-12
    train_sq = train_f.pow(2).sum(1)                         # |b|^2
    train_inv = train_sq.sqrt().clamp_min(eps).reciprocal()  # 1/|b| (0-vectors -> similarity 0)
    train_t = train_f.T
    m = test_f.shape[0]
    rows = min(chunk_size, m)
    # two (chunk x train) buffers reused by every chunk: no per-chunk allocation or page faults
    dot_buf = torch.empty(rows, train_f.shape[0], device=train_f.device, dtype=train_f.dtype)
    key_buf = torch.empty_like(dot_buf) if (need_euc and need_cos) else None
    starts = range(0, m, chunk_size)
    for s in progress(starts, desc="knn", total=len(starts), disable=None if show_progress else True):
        q = test_f[s:s + chunk_size]
        b = q.shape[0]
        cos_v = cos_i = euc_i = None
        # |a|^2 - 2ab + |b|^2 orders the Euclidean neighbours; |a|^2 is constant per row, so it is
        # left out. <a,b>/|b| orders the cosine neighbours; 1/|a| is applied to the k kept values.
        if need_euc and not need_cos:
            key = torch.addmm(train_sq.unsqueeze(0), q, train_t, alpha=-2.0, out=dot_buf[:b])  # fused
            euc_i = key.topk(kmax, dim=1, largest=False, sorted=True).indices
        else:
            dot = torch.mm(q, train_t, out=dot_buf[:b])         # the one matmul per chunk
            if key_buf is not None:
                key = torch.add(train_sq.unsqueeze(0), dot, alpha=-2.0, out=key_buf[:b])
                euc_i = key.topk(kmax, dim=1, largest=False, sorted=True).indices
            v, cos_i = dot.mul_(train_inv.unsqueeze(0)).topk(kmax, dim=1, largest=True, sorted=True)
            cos_v = v * q.pow(2).sum(1).sqrt().clamp_min(eps).reciprocal().unsqueeze(1)
        yield s, s + q.shape[0], cos_v, cos_i, euc_i


def _faiss_neighbours(train_f: torch.Tensor, test_f: torch.Tensor, kmax: int, need_cos: bool,
                      need_euc: bool, chunk_size: int, show_progress: bool
                      ) -> Iterator[tuple[int, int, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]]:
    """Same as :func:`_torch_neighbours` with exact faiss flat indexes (CPU, optional dependency)."""
    import faiss  # noqa: PLC0415 - optional dependency

    dev = train_f.device
    tr = train_f.detach().float().cpu().contiguous().numpy()
    te = test_f.detach().float().cpu().contiguous().numpy()
    d = tr.shape[1]

    def _unit(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12))

    ip = l2 = None
    if need_cos:
        ip = faiss.IndexFlatIP(d)
        ip.add(_unit(tr))
    if need_euc:
        l2 = faiss.IndexFlatL2(d)
        l2.add(tr)
    starts = range(0, te.shape[0], chunk_size)
    for s in progress(starts, desc="knn (faiss)", total=len(starts), disable=None if show_progress else True):
        q = te[s:s + chunk_size]
        cos_v = cos_i = euc_i = None
        if ip is not None:
            v, i = ip.search(_unit(q), kmax)
            cos_v, cos_i = torch.from_numpy(v).to(dev), torch.from_numpy(i).to(dev)
        if l2 is not None:
            _, i = l2.search(np.ascontiguousarray(q), kmax)
            euc_i = torch.from_numpy(i).to(dev)
        yield s, s + q.shape[0], cos_v, cos_i, euc_i


def majority_vote(nbr_labels: torch.Tensor, k: int, num_classes: int) -> torch.Tensor:
    """Majority vote over the first ``k`` columns of ``nbr_labels`` (B, >=k), nearest first.

    Ties in the vote count go to the tied class whose first neighbour is nearest (see module doc).
    """
    b, kk = nbr_labels.shape
    lab = nbr_labels[:, :k]
    counts = torch.zeros(b, num_classes, dtype=torch.int64, device=lab.device)
    counts.scatter_add_(1, lab, torch.ones_like(lab))
    # rank of each class's nearest neighbour among the first k (k for absent classes)
    pos = torch.arange(k, device=lab.device).expand(b, k)
    first = torch.full((b, num_classes), k, dtype=torch.int64, device=lab.device)
    first.scatter_reduce_(1, lab, pos, reduce="amin", include_self=True)
    score = counts * (k + 1) + (k - first)   # more votes first; then the nearer first neighbour
    return score.argmax(1)


def weighted_vote(nbr_labels: torch.Tensor, nbr_sims: torch.Tensor, k: int, num_classes: int,
                  temperature: float) -> torch.Tensor:
    """Class with the largest sum of ``exp(sim / T)`` over the first ``k`` neighbours."""
    lab = nbr_labels[:, :k]
    w = nbr_sims[:, :k].float().div(temperature).exp()
    probs = torch.zeros(lab.shape[0], num_classes, dtype=w.dtype, device=lab.device)
    probs.scatter_add_(1, lab, w)
    return probs.argmax(1)


def knn_predict(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = METRICS,
    weighted_temperature: float | None = 0.07,
    weighted_ks: Sequence[int] | None = None,
    chunk_size: int | None = None,
    backend: str = "torch",
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    show_progress: bool = True,
) -> dict[str, dict[str, dict[int, torch.Tensor]]]:
    """Predicted labels ``{"knn": {metric: {k: (M,)}}, "knn_weighted": {"cosine": {k: (M,)}}}``.

    All ks and metrics come from one blocked pass over the train set (top-``max(ks)`` per test
    chunk of ``chunk_size`` rows; default: :func:`block_elements` of the device, 32M on the CPU).
    ``weighted_temperature=None`` skips the weighted vote; ``weighted_ks`` defaults to ``ks``.
    ``backend``: "torch" or "faiss" (exact flat indexes on CPU; optional dependency; measured 1.5x
    slower than "torch" here at 10,000 x 2,000 x 512, so it is never chosen automatically).
    """
    ks = [int(k) for k in ks]
    wks = [int(k) for k in (weighted_ks if weighted_ks is not None else ks)] if weighted_temperature else []
    _check_inputs(train_f, train_y, test_f, None, ks + wks, metrics)
    if weighted_temperature is not None and weighted_temperature <= 0:
        raise UserError(f"weighted_temperature: expected > 0, got {weighted_temperature}")
    dev = torch.device(device) if device is not None else train_f.device
    train_f = train_f.detach().to(dev, torch.float32)
    test_f = test_f.detach().to(dev, torch.float32)
    train_y = train_y.detach().to(dev, torch.int64)
    if num_classes is None:
        num_classes = int(train_y.max()) + 1
    kmax = max(ks + wks)
    if chunk_size is None:   # blocks sized from the device's memory (block_elements), of equal size
        chunk_size = default_chunk(train_f.shape[0], test_f.shape[0], block_elements(dev))
    if chunk_size < 1:
        raise UserError(f"chunk_size: expected a positive integer, got {chunk_size}")
    if backend not in ("torch", "faiss"):
        raise UserError(f"backend: expected 'torch' or 'faiss', got {backend!r}")
    if backend == "faiss" and not faiss_available():
        raise UserError("backend 'faiss': faiss is not installed (pip install faiss-cpu), use 'torch'")
    need_cos = "cosine" in metrics or bool(wks)
    need_euc = "euclidean" in metrics
    m = test_f.shape[0]
    out: dict[str, dict[str, dict[int, torch.Tensor]]] = {
        "knn": {met: {k: torch.empty(m, dtype=torch.int64, device=dev) for k in ks} for met in metrics},
    }
    if wks:
        out["knn_weighted"] = {"cosine": {k: torch.empty(m, dtype=torch.int64, device=dev) for k in wks}}
    gen = _faiss_neighbours if backend == "faiss" else _torch_neighbours
    for s, e, cos_v, cos_i, euc_i in gen(train_f, test_f, kmax, need_cos, need_euc, chunk_size, show_progress):
        for met, idx in (("cosine", cos_i), ("euclidean", euc_i)):
            if met not in metrics or idx is None:
                continue
            lab = train_y[idx]
            for k in ks:
                out["knn"][met][k][s:e] = majority_vote(lab, k, num_classes)
        if wks and cos_i is not None and cos_v is not None:
            lab = train_y[cos_i]
            for k in wks:
                out["knn_weighted"]["cosine"][k][s:e] = weighted_vote(lab, cos_v, k, num_classes,
                                                                      float(weighted_temperature))
    return out


def knn_classify(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    ks: Sequence[int] = DEFAULT_KS,
    metrics: Sequence[str] = METRICS,
    weighted_temperature: float | None = 0.07,
    weighted_ks: Sequence[int] | None = None,
    chunk_size: int | None = None,
    backend: str = "torch",
    device: torch.device | str | None = None,
    show_progress: bool = True,
    outcomes: bool = False,
) -> dict[str, Any]:
    """Top-1 accuracies in percent: ``{"knn": {"cosine": {"5": 91.2, ...}, "euclidean": {...}},
    "knn_weighted": {"cosine": {"5": ..., ...}}}`` (see :func:`knn_predict` for the arguments).
    ``outcomes``: also ``"right": {metric: {"5": (M,) bool, ...}}``, each test image's majority-vote
    correctness (CPU), for paired before/after statistics (:mod:`simxir.eval.paired`)."""
    _check_inputs(train_f, train_y, test_f, test_y, [int(k) for k in ks], metrics)
    ncls = int(max(int(train_y.max()), int(test_y.max()) if test_y.numel() else 0)) + 1
    preds = knn_predict(train_f, train_y, test_f, ks, metrics, weighted_temperature, weighted_ks,
                        chunk_size, backend, device, num_classes=ncls, show_progress=show_progress)
    m = max(1, test_y.shape[0])
    res: dict[str, Any] = {}
    for kind, by_metric in preds.items():
        res[kind] = {}
        for met, by_k in by_metric.items():
            res[kind][met] = {}
            for k, p in by_k.items():
                hit = p == test_y.to(p.device, torch.int64)
                res[kind][met][str(k)] = 100.0 * float(hit.sum()) / m
                if outcomes and kind == "knn":
                    res.setdefault("right", {}).setdefault(met, {})[str(k)] = hit.cpu()
    return res


def parse_ks(text: str) -> list[int]:
    """"5,7,11" -> [5, 7, 11]; "" or "none" -> [] (kNN skipped)."""
    if text.strip().lower() in ("", "none", "off"):
        return []
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            k = int(part)
        except ValueError:
            raise UserError(f"--knn: expected comma-separated positive integers like 5,7,11, got {text!r}") from None
        if k < 1:
            raise UserError(f"--knn: expected positive integers, got {k}")
        out.append(k)
    return sorted(set(out))
