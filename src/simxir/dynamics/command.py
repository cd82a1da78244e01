"""``simxir dynamics``: run neighbour-averaging dynamics on a point set, and the paper's figures."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import typer

from simxir.errors import UserError
from simxir.io import read_npz
from simxir.io import atomic_write_bytes
from simxir.progress import log

dynamics_app = typer.Typer(help="Neighbour-averaging dynamics lab (SimXIR paper, section 4).",
                           no_args_is_help=True)

JSON_HELP = "print one JSON object on stdout"
OUT_DIR_HELP = "folder for the figure (PNG) and metrics (JSON)"


def _emit(obj: dict[str, Any], json_out: bool, text: str) -> None:
    if json_out:
        print(json.dumps(obj))
    else:
        print(text)


def load_points(path: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Read ``inputs`` (n, d1), optional ``reps`` (n, d2) and ``groups`` (n,) from an .npz."""
    p = Path(path)
    arrays = read_npz(p, ("inputs",), optional=("reps", "groups"), option="--input")
    inputs, reps, groups = arrays["inputs"], arrays.get("reps"), arrays.get("groups")
    if inputs.ndim != 2 or inputs.dtype.kind not in "fiu" or inputs.shape[0] == 0:
        raise UserError(f"--input {p}: 'inputs' must be a non-empty 2-D numeric array (n, d), got shape "
                        f"{inputs.shape} dtype {inputs.dtype}")
    n = inputs.shape[0]
    if reps is not None and (reps.ndim != 2 or reps.shape[0] != n or reps.dtype.kind not in "fiu"):
        raise UserError(f"--input {p}: 'reps' must be a numeric array of shape ({n}, d2), got {reps.shape}")
    if reps is not None and not np.isfinite(reps).all():
        raise UserError(f"--input {p}: 'reps' contains NaN or inf")
    if groups is not None and (groups.shape != (n,) or groups.dtype.kind not in "iu"):
        raise UserError(f"--input {p}: 'groups' must be integer labels of shape ({n},), got {groups.shape} {groups.dtype}")
    return inputs, reps, groups


def run_command(
    input: str = typer.Option(..., "--input", help="POINTS.npz with 'inputs' (n,d1), optional 'reps' (n,d2), 'groups' (n,)"),
    eps: Optional[float] = typer.Option(None, "--eps", help="radius rule N(x) = {x' : ||x'-x|| < eps}"),
    knn: Optional[int] = typer.Option(None, "--knn", help="kNN rule: the k nearest points, x itself included"),
    closed: bool = typer.Option(False, "--closed", help="radius rule with <= instead of <"),
    weights: str = typer.Option("uniform", "--weights", help="uniform | gaussian (kernel over the same graph)"),
    sigma: Optional[float] = typer.Option(None, "--sigma", help="gaussian kernel width (default: median neighbour distance)"),
    index: str = typer.Option("auto", "--index", help="kNN search: auto | kdtree | torch | faiss (approximate)"),
    steps: int = typer.Option(100, "--steps", help="number of averaging steps T"),
    spherical: bool = typer.Option(False, "--spherical", help="l2-normalise after each step (eq. 4.2)"),
    every: int = typer.Option(1, "--every", help="record metrics every M steps (and at step 0 and T)"),
    dim: int = typer.Option(2, "--dim", help="dimension of random initial reps when the file has no 'reps'"),
    seed: int = typer.Option(0, "--seed", help="seed of random initial reps"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    float32: bool = typer.Option(False, "--float32", help="iterate in float32 (half the memory; default float64)"),
    out: Optional[str] = typer.Option(None, "--out", help="OUT.npz: final reps and metric arrays"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Iterate neighbour averaging on reps; neighbourhoods come from the inputs."""
    from simxir.dynamics.groups import check_labels, components, is_closed
    from simxir.dynamics.metrics import GroupMetrics
    from simxir.dynamics.neighbourhoods import knn_operator, radius_operator
    from simxir.dynamics.steps import run

    if (eps is None) == (knn is None):
        raise UserError("--eps/--knn: pass exactly one neighbourhood rule")
    if weights not in ("uniform", "gaussian"):
        raise UserError(f"--weights: expected uniform or gaussian, got {weights!r}")
    if dim < 1:
        raise UserError(f"--dim: expected >= 1, got {dim}")
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device: expected auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    inputs, reps, groups = load_points(input)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    t0 = time.perf_counter()
    if eps is not None:
        op = radius_operator(inputs, eps, closed=closed, weights=weights, sigma=sigma)  # type: ignore[arg-type]
    else:
        op = knn_operator(inputs, int(knn), weights=weights, sigma=sigma, index=index)  # type: ignore[arg-type, arg-type]
    t_graph = time.perf_counter() - t0
    comp = components(op)
    labels = check_labels(groups, op.n, "--input groups") if groups is not None else comp
    if reps is None:
        reps = np.random.default_rng(seed).standard_normal((op.n, dim))
    f0 = torch.from_numpy(np.ascontiguousarray(reps, dtype=np.float32 if float32 else np.float64)).to(dev)
    gm = GroupMetrics(labels)
    t1 = time.perf_counter()
    res = run(op, f0, steps, spherical=spherical, every=every, metrics=gm)
    t_run = time.perf_counter() - t1
    log(f"{op.rule}: {op.n} points, {op.degrees().mean():.1f} neighbours/point, "
        f"{int(labels.max()) + 1} groups, {steps} steps in {t_run:.2f}s")
    if out:
        buf = io.BytesIO()
        np.savez(buf, reps=res.reps.cpu().numpy(), steps=np.asarray(res.steps), groups=labels,
                 pairs=gm.pairs, **res.history)
        atomic_write_bytes(out, buf.getvalue())
    obj: dict[str, Any] = {
        "n": op.n, "rule": op.rule, "mean_neighbours": float(op.degrees().mean()),
        "num_components": int(comp.max() + 1), "num_groups": int(labels.max() + 1),
        "groups_closed": is_closed(op, labels), "spherical": spherical, "reps_dim": int(f0.shape[1]),
        "steps": res.steps, "pairs": gm.pairs.tolist(),
        "metrics": {k: v.tolist() for k, v in res.history.items()},
        "seconds": {"graph": round(t_graph, 4), "dynamics_and_metrics": round(t_run, 4)},
        "out": out,
    }
    d = res.history["diameter"]
    _emit(obj, json_out, f"{op.rule}: {op.n} points, {obj['num_groups']} groups; max group diameter "
          f"{d[0].max():.4g} -> {d[-1].max():.4g} after {steps} steps" + (f"; wrote {out}" if out else ""))


def groups_command(out: Optional[str] = typer.Option("results/dynamics", "--out", help=OUT_DIR_HELP),
                   steps: int = typer.Option(500, "--steps"), eps: float = typer.Option(0.2, "--eps"),
                   seed: int = typer.Option(0, "--seed"),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 4: four disjoint neighbour-connected groups, unconstrained and spherical."""
    from simxir.dynamics.experiments import groups_experiment

    r = groups_experiment(out, eps=eps, steps=steps, seed=seed)
    summary = {k: r[m][k] for m in ("unconstrained", "spherical") for k in r[m] if k.endswith("fraction")}
    _emit(r, json_out, f"groups: {r['num_groups']} groups, {json.dumps(summary)}; files {r.get('files')}")


def overlap_command(out: Optional[str] = typer.Option("results/dynamics", "--out", help=OUT_DIR_HELP),
                    steps: int = typer.Option(500, "--steps"), eps: float = typer.Option(0.2, "--eps"),
                    seed: int = typer.Option(0, "--seed"),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 5: four groups with intersecting neighbourhoods."""
    from simxir.dynamics.experiments import overlap_experiment

    r = overlap_experiment(out, eps=eps, steps=steps, seed=seed)
    _emit(r, json_out, f"overlap: diameter not shrinking at {r['diameter_not_shrinking_steps']} steps per group; "
          f"intra msd fell at {r['intra_msd_fell_at_those_steps']} of those; files {r.get('files')}")


def iris_command(out: Optional[str] = typer.Option("results/dynamics", "--out", help=OUT_DIR_HELP),
                 eps: float = typer.Option(0.4, "--eps"), seeds: int = typer.Option(10, "--seeds"),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 3: k-means on Iris before and after neighbour averaging (N(x) = {||x'-x|| <= eps})."""
    from simxir.dynamics.experiments import iris_experiment

    if seeds < 1:
        raise UserError(f"--seeds: expected >= 1, got {seeds}")
    r = iris_experiment(out, eps=eps, seeds=seeds)
    _emit(r, json_out, f"iris: k-means accuracy {r['before']:.3f} before, best {r['after_best']:.3f} after "
          f"(paper 0.89 -> 0.96); files {r.get('files')}")


def embeddings_command(
    features: Optional[str] = typer.Option(None, "--features", help="features .npz (the `simxir eval --features` format)"),
    data: Optional[str] = typer.Option(None, "--data", help="images .npz (raw pixels), or dataset SPEC with --encoder"),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="encoder checkpoint (needs --data SPEC)"),
    k_graph: int = typer.Option(10, "--knn", help="k of the kNN graph over the features"),
    k_eval: int = typer.Option(20, "--k-eval", help="k of the kNN classifier"),
    steps: int = typer.Option(20, "--steps"), every: int = typer.Option(1, "--every"),
    spherical: bool = typer.Option(False, "--spherical"),
    max_train: Optional[int] = typer.Option(None, "--max-train"), max_test: Optional[int] = typer.Option(None, "--max-test"),
    out: Optional[str] = typer.Option("results/dynamics", "--out", help=OUT_DIR_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """kNN accuracy of features smoothed by neighbour averaging, per step."""
    from simxir.dynamics.experiments import embeddings_experiment, load_embedding_inputs

    tr, ytr, te, yte, src = load_embedding_inputs(features, data, encoder, max_train, max_test)
    r = embeddings_experiment(tr, ytr, te, yte, src, out, k_graph=k_graph, steps=steps, every=every,
                              k_eval=k_eval, spherical=spherical)
    _emit(r, json_out, f"embeddings ({src}): kNN top-1 {r['knn_top1'][0]:.2f}% -> best {r['best_knn_top1']:.2f}% "
          f"at step {r['best_step']}; files {r.get('files')}")


dynamics_app.command("run")(run_command)
dynamics_app.command("groups")(groups_command)
dynamics_app.command("overlap")(overlap_command)
dynamics_app.command("iris")(iris_command)
dynamics_app.command("embeddings")(embeddings_command)
