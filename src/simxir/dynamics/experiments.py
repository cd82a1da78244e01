"""Reproductions of the paper's dynamics figures (3, 4, 5) and dynamics on real embeddings.

Each function returns a JSON-serialisable dict and, when ``out_dir`` is given, writes
``<name>.json`` there and ``<name>.png`` (drawn by :mod:`simxir.dynamics.figures`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from simxir.device import default_device
from simxir.dynamics import figures
from simxir.dynamics.groups import components
from simxir.dynamics.metrics import GroupMetrics
from simxir.dynamics.neighbourhoods import knn_operator, radius_operator
from simxir.dynamics.propagation import clustering_accuracy, smooth_then_kmeans
from simxir.dynamics.steps import run
from simxir.errors import UserError
from simxir.eval.features import encoder_features, load_features_npz
from simxir.eval.knn import knn_classify
from simxir.io import atomic_write_json, read_npz
from simxir.progress import log

GROUP_CENTERS = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def _write(out_dir: str | Path | None, name: str, result: dict[str, Any],
           plot: Callable[[Path], Path]) -> None:
    """With ``out_dir``: ``plot(out_dir/<name>.png)`` and ``out_dir/<name>.json`` (the result, which
    then names both files)."""
    if out_dir is None:
        return
    out = Path(out_dir)
    png = plot(out / f"{name}.png")
    result["files"] = {"json": str(out / f"{name}.json"), "png": str(png)}
    atomic_write_json(result, out / f"{name}.json")


def _to_list(a: np.ndarray) -> Any:
    """Nested lists of floats with 6 significant digits (keeps the result JSONs small)."""
    return np.vectorize(lambda v: float(f"{v:.6g}"), otypes=[float])(np.asarray(a, dtype=np.float64)).tolist()


def four_groups_inputs(n_per_group: int, half_width: float, seed: int, eps: float,
                       max_tries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Four square patches of uniform points around GROUP_CENTERS (resampled until each patch is
    one neighbour-connected group under ``eps``); returns inputs and patch labels."""
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        x = np.concatenate([c + rng.uniform(-half_width, half_width, (n_per_group, 2)) for c in GROUP_CENTERS])
        lab = np.repeat(np.arange(4), n_per_group)
        comp = components(radius_operator(x, eps))
        if half_width * 2 + eps >= 0.5 or (comp.max() + 1 == 4 and (comp == lab).all()):
            return x, lab
    raise UserError(f"could not draw four connected groups with eps={eps}; raise n_per_group")


def initial_reps(labels: np.ndarray, dim: int, spherical: bool, seed: int, spread: float = 0.6,
                 mean_radius: float = 2.0) -> np.ndarray:
    """Random reps whose group means are separated: group g around direction 2 pi g / G.

    Spherical: angles within a group stay below 2 * spread * 90 degrees (< 180)."""
    rng = np.random.default_rng(seed + 1)
    G = int(labels.max()) + 1
    ang = 2 * np.pi * labels / G
    if spherical:
        theta = ang + rng.uniform(-spread, spread, len(labels)) * (np.pi / 2)
        f = np.stack([np.cos(theta), np.sin(theta)], 1)
        if dim > 2:
            f = np.concatenate([f, np.zeros((len(labels), dim - 2))], 1)
        return f
    f = rng.standard_normal((len(labels), dim)) * spread
    f[:, 0] += mean_radius * np.cos(ang)
    f[:, 1 % dim] += mean_radius * np.sin(ang)
    return f


def _history_json(res: Any, gm: GroupMetrics) -> dict[str, Any]:
    """Per-step metrics; bounds and exactness flags are folded into one flag when all exact."""
    h = dict(res.history)
    out: dict[str, Any] = {"steps": res.steps, "pairs": gm.pairs.tolist()}
    for key, bound in (("diameter", "diameter_upper"), ("min_distance", "min_distance_lower")):
        flag = h.pop(f"{key}_exact")
        if flag.all():
            h.pop(bound)
        out[f"{key}_all_exact"] = bool(flag.all())
    out.update({k: _to_list(v) for k, v in h.items()})
    return out


def _check_monotone(h: dict[str, np.ndarray], pairs: np.ndarray) -> dict[str, Any]:
    """How often the theorems' strict inequalities held between recorded steps."""
    D, M = h["diameter"], h["min_distance"]
    collapsed = D[:-1] <= 1e-9 * np.maximum(D[:1], 1e-300)
    dec = (D[1:] < D[:-1]) | collapsed
    out = {"diameter_strictly_decreasing_fraction": float(dec.mean()) if dec.size else 1.0}
    if M.shape[1]:
        pc = collapsed[:, pairs[:, 0]] & collapsed[:, pairs[:, 1]]
        inc = (M[1:] > M[:-1]) | pc
        out["min_distance_strictly_increasing_fraction"] = float(inc.mean()) if inc.size else 1.0
    return out


def groups_experiment(out_dir: str | Path | None = None, n_per_group: int = 60, eps: float = 0.2,
                      steps: int = 500, seed: int = 0, panels: tuple[int, ...] = (0, 1, 5, 20, 100, 500)
                      ) -> dict[str, Any]:
    """Figure 4: four disjoint neighbour-connected groups, unconstrained and spherical."""
    x, lab = four_groups_inputs(n_per_group, 0.12, seed, eps)
    op = radius_operator(x, eps)
    comp = components(op)
    panels = tuple(p for p in panels if p <= steps)
    result: dict[str, Any] = {"experiment": "groups", "n": len(x), "eps": eps, "steps": steps,
                              "seed": seed, "num_groups": int(comp.max() + 1),
                              "mean_neighbours": float(op.degrees().mean())}
    runs = {}
    for spherical in (False, True):
        f0 = initial_reps(comp, 2, spherical, seed)
        gm = GroupMetrics(comp)
        res = run(op, torch.from_numpy(f0), steps, spherical=spherical, metrics=gm, snapshot_steps=panels)
        name = "spherical" if spherical else "unconstrained"
        result[name] = _history_json(res, gm) | _check_monotone(res.history, gm.pairs)
        runs[name] = res
    _write(out_dir, "groups", result, lambda path: figures.plot_groups(x, comp, eps, panels, runs, path))
    return result


def overlap_experiment(out_dir: str | Path | None = None, n_per_group: int = 60, eps: float = 0.2,
                       steps: int = 500, seed: int = 0, half_width: float = 0.17) -> dict[str, Any]:
    """Figure 5: four patches wide enough that points of adjacent patches are neighbours, so
    the groups (patch labels) intersect through shared neighbourhoods and are not closed."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([c + rng.uniform(-half_width, half_width, (n_per_group, 2)) for c in GROUP_CENTERS])
    lab = np.repeat(np.arange(4), n_per_group)
    op = radius_operator(x, eps)
    gm = GroupMetrics(lab)
    f0 = initial_reps(lab, 2, False, seed)
    shown = sorted({0, min(50, steps), steps})
    res = run(op, torch.from_numpy(f0), steps, metrics=gm, snapshot_steps=shown)
    h = res.history
    D, msd = h["diameter"], h["intra_msd"]
    live = D[:-1] > 1e-6 * D[:1]
    not_shrinking = (D[1:] >= D[:-1]) & live
    cross = sum(int(lab[i] != lab[j]) for i, j in zip(np.repeat(np.arange(op.n), op.degrees()), op.indices))
    result: dict[str, Any] = {
        "experiment": "overlap", "n": len(x), "eps": eps, "steps": steps, "seed": seed,
        "num_components": int(components(op).max() + 1),
        **_history_json(res, gm),
        "cross_group_neighbour_pairs": cross,
        "diameter_not_shrinking_steps": not_shrinking.sum(0).tolist(),
        "intra_msd_fell_at_those_steps": ((msd[1:] < msd[:-1]) & not_shrinking).sum(0).tolist(),
        "intra_msd_falling_steps": ((msd[1:] < msd[:-1]) & live).sum(0).tolist(),
        "final_over_initial_diameter": _to_list(D[-1] / D[0]),
        "final_over_initial_intra_msd": _to_list(msd[-1] / msd[0]),
    }
    _write(out_dir, "overlap", result, lambda path: figures.plot_overlap(x, lab, res, shown, path))
    return result


def iris_experiment(out_dir: str | Path | None = None, eps: float = 0.4,
                    steps: tuple[int, ...] = (0, 1, 2, 5, 10, 20, 30, 50, 100, 200),
                    seeds: int = 10) -> dict[str, Any]:
    """Figure 3: k-means accuracy on Iris before/after averaging with N(x) = {||x'-x|| <= eps}."""
    from sklearn.datasets import load_iris  # noqa: PLC0415 - scikit-learn takes ~1 s to import

    X, y = load_iris(return_X_y=True)
    op = radius_operator(X, eps, closed=True)
    table: dict[str, Any] = {}
    for n_init in (1, 10):
        rows = []
        for t in steps:
            accs = [clustering_accuracy(y, smooth_then_kmeans(op, X, t, 3, seed=s, n_init=n_init))
                    for s in range(seeds)]
            rows.append({"steps": t, "mean": float(np.mean(accs)), "std": float(np.std(accs)),
                         "min": float(np.min(accs)), "max": float(np.max(accs))})
        table[f"n_init={n_init}"] = rows
    best = table["n_init=10"]
    result = {
        "experiment": "iris", "eps": eps, "rule": "||x'-x|| <= eps on the raw 4 features", "seeds": seeds,
        "mean_neighbours": float(op.degrees().mean()), "num_components": int(components(op).max() + 1),
        "accuracy": table,
        "before": best[0]["mean"] if steps[0] == 0 else None,
        "after_best": max(r["mean"] for r in best),
        "paper": {"before": 0.89, "after": 0.96},
    }

    def plot(path: Path) -> Path:
        f_end = run(op, torch.from_numpy(X), max(steps), show_progress=False).reps.numpy()
        return figures.plot_iris(table, X, f_end, y, max(steps), path)

    _write(out_dir, "iris", result, plot)
    return result


def _knn_acc(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
             k: int) -> float:
    """Cosine kNN top-1 accuracy (%), majority vote."""
    r = knn_classify(train_f, train_y, test_f, test_y, ks=(k,), metrics=("cosine",),
                     weighted_temperature=None, show_progress=False)
    return float(r["knn"]["cosine"][str(k)])


def load_embedding_inputs(features: str | None, data: str | None, encoder: str | None,
                          max_train: int | None = None, max_test: int | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """Features (train_f, train_y, test_f, test_y, source) from a features .npz, an encoder over a
    dataset spec, or raw pixels of an images .npz (x_train/y_train/x_test/y_test)."""
    if features:
        tr, ytr, te, yte = load_features_npz(features)
        src = f"features {features}"
    elif encoder:
        if not data:
            raise UserError("--encoder: also pass --data SPEC (the dataset to embed)")
        tr, ytr, te, yte = encoder_features(encoder, data, None, None, False, None, None, 256, default_device())
        src = f"encoder {encoder} on {data}"
    elif data:
        z = read_npz(data, ("x_train", "y_train", "x_test", "y_test"), option="--data")
        tr = torch.from_numpy(z["x_train"].reshape(len(z["x_train"]), -1).astype(np.float32) / 255.0)
        te = torch.from_numpy(z["x_test"].reshape(len(z["x_test"]), -1).astype(np.float32) / 255.0)
        ytr, yte = torch.from_numpy(z["y_train"].astype(np.int64)), torch.from_numpy(z["y_test"].astype(np.int64))
        src = f"raw pixels of {data}"
    else:
        raise UserError("embeddings: pass --features FILE, --data IMAGES.npz, or --encoder CKPT --data SPEC")
    if max_train:
        tr, ytr = tr[:max_train], ytr[:max_train]
    if max_test:
        te, yte = te[:max_test], yte[:max_test]
    return tr, ytr, te, yte, src


def _edge_agreement(op: Any, y: np.ndarray) -> float:
    rows = np.repeat(np.arange(op.n), op.degrees())
    other = rows != op.indices
    return float((y[rows[other]] == y[op.indices[other]]).mean()) if other.any() else 1.0


def embeddings_experiment(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor,
                          test_y: torch.Tensor, source: str = "", out_dir: str | Path | None = None,
                          k_graph: int = 10, steps: int = 20, every: int = 1, k_eval: int = 20,
                          spherical: bool = False, center: bool = True) -> dict[str, Any]:
    """Smooth features over a kNN graph built on the features themselves (train and test points
    together, no labels used), then kNN-classify test from train at each recorded step.

    Features are centred and l2-normalised first (``center``); the graph uses cosine geometry."""
    f = torch.cat([train_f, test_f]).double()
    if center:
        f = f - train_f.double().mean(0)
    f = torch.nn.functional.normalize(f, dim=1)
    op = knn_operator(f, k_graph)
    ntr = len(train_f)
    accs: list[float] = []

    def metric(g: torch.Tensor) -> dict[str, Any]:
        acc = _knn_acc(g[:ntr], train_y, g[ntr:], test_y, k_eval)
        accs.append(acc)
        return {"knn_top1": acc}

    res = run(op, f, steps, spherical=spherical, every=every, metrics=metric)
    comp = components(op)
    result = {
        "experiment": "embeddings", "source": source, "n_train": ntr, "n_test": len(test_f),
        "dim": int(f.shape[1]), "k_graph": k_graph, "k_eval": k_eval, "spherical": spherical,
        "num_components": int(comp.max() + 1),
        # diagnostic only: fraction of graph edges (self excluded) joining points of one class
        "graph_edge_label_agreement": _edge_agreement(op, torch.cat([train_y, test_y]).numpy()),
        "steps": res.steps, "knn_top1": [round(a, 4) for a in accs],
        "best_step": int(res.steps[int(np.argmax(accs))]), "best_knn_top1": float(max(accs)),
    }
    _write(out_dir, "embeddings", result,
           lambda path: figures.plot_embeddings(res.steps, accs, k_eval, source, path))
    log(f"embeddings: kNN top-1 {accs[0]:.2f}% at step 0 -> best {max(accs):.2f}% at step {result['best_step']}")
    return result
