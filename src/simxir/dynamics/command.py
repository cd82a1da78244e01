"""``simxir dynamics``: run neighbour-averaging dynamics on a point set, and the paper's figures."""

from __future__ import annotations

import json
from typing import Any

import typer

from simxir.device import parse_device
from simxir.errors import UserError

dynamics_app = typer.Typer(help="Neighbour-averaging dynamics lab (SimXIR paper, section 4).",
                           no_args_is_help=True)

JSON_HELP = "print one JSON object on stdout"
OUT_DIR_HELP = "folder for the figure (PNG) and metrics (JSON)"


def _emit(obj: dict[str, Any], json_out: bool, text: str) -> None:
    if json_out:
        print(json.dumps(obj))
    else:
        print(text)


def run_command(
    input: str = typer.Option(..., "--input", help="POINTS.npz with 'inputs' (n,d1), optional 'reps' (n,d2), "
                              "'groups' (n,)"),
    eps: float | None = typer.Option(None, "--eps", help="radius rule N(x) = {x' : ||x'-x|| < eps}"),
    knn: int | None = typer.Option(None, "--knn", help="kNN rule: the k nearest points, x itself included"),
    closed: bool = typer.Option(False, "--closed", help="radius rule with <= instead of <"),
    weights: str = typer.Option("uniform", "--weights", help="uniform | gaussian (kernel over the same graph)"),
    sigma: float | None = typer.Option(None, "--sigma",
                                       help="gaussian kernel width (default: median neighbour distance)"),
    index: str = typer.Option("auto", "--index", help="kNN search: auto | kdtree | torch | faiss (approximate)"),
    steps: int = typer.Option(100, "--steps", help="number of averaging steps T"),
    spherical: bool = typer.Option(False, "--spherical", help="l2-normalise after each step (eq. 4.2)"),
    every: int = typer.Option(1, "--every", help="record metrics every M steps (and at step 0 and T)"),
    dim: int = typer.Option(2, "--dim", help="dimension of random initial reps when the file has no 'reps'"),
    seed: int = typer.Option(0, "--seed", help="seed of random initial reps"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    float32: bool = typer.Option(False, "--float32", help="iterate in float32 (half the memory; default float64)"),
    out: str | None = typer.Option(None, "--out", help="OUT.npz: final reps and metric arrays"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Iterate neighbour averaging on reps; neighbourhoods come from the inputs."""
    if (eps is None) == (knn is None):
        raise UserError("--eps/--knn: pass exactly one neighbourhood rule")
    if weights not in ("uniform", "gaussian"):
        raise UserError(f"--weights: expected uniform or gaussian, got {weights!r}")
    if dim < 1:
        raise UserError(f"--dim: expected >= 1, got {dim}")
    from simxir.dynamics.lab import load_points, run_points  # noqa: PLC0415 - start-up time (scipy)

    dev = parse_device(device, "--device")
    inputs, reps, groups = load_points(input)
    obj = run_points(inputs, reps, groups, eps=eps, knn=knn, closed=closed, weights=weights, sigma=sigma,
                     index=index, steps=steps, spherical=spherical, every=every, dim=dim, seed=seed,
                     device=dev, float32=float32, out=out)
    d = obj["metrics"]["diameter"]
    _emit(obj, json_out, f"{obj['rule']}: {obj['n']} points, {obj['num_groups']} groups; max group diameter "
          f"{max(d[0]):.4g} -> {max(d[-1]):.4g} after {steps} steps" + (f"; wrote {out}" if out else ""))


def groups_command(out: str | None = typer.Option("dynamics_out", "--out", help=OUT_DIR_HELP),
                   steps: int = typer.Option(500, "--steps"), eps: float = typer.Option(0.2, "--eps"),
                   seed: int = typer.Option(0, "--seed"),
                   json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 4: four disjoint neighbour-connected groups, unconstrained and spherical."""
    from simxir.dynamics.experiments import groups_experiment  # noqa: PLC0415 - start-up time (scipy)

    r = groups_experiment(out, eps=eps, steps=steps, seed=seed)
    summary = {k: r[m][k] for m in ("unconstrained", "spherical") for k in r[m] if k.endswith("fraction")}
    _emit(r, json_out, f"groups: {r['num_groups']} groups, {json.dumps(summary)}; files {r.get('files')}")


def overlap_command(out: str | None = typer.Option("dynamics_out", "--out", help=OUT_DIR_HELP),
                    steps: int = typer.Option(500, "--steps"), eps: float = typer.Option(0.2, "--eps"),
                    seed: int = typer.Option(0, "--seed"),
                    json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 5: four groups with intersecting neighbourhoods."""
    from simxir.dynamics.experiments import overlap_experiment  # noqa: PLC0415 - start-up time (scipy)

    r = overlap_experiment(out, eps=eps, steps=steps, seed=seed)
    _emit(r, json_out, f"overlap: diameter not shrinking at {r['diameter_not_shrinking_steps']} steps per group; "
          f"intra msd fell at {r['intra_msd_fell_at_those_steps']} of those; files {r.get('files')}")


def iris_command(out: str | None = typer.Option("dynamics_out", "--out", help=OUT_DIR_HELP),
                 eps: float = typer.Option(0.4, "--eps"), seeds: int = typer.Option(10, "--seeds"),
                 json_out: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Figure 3: k-means on Iris before and after neighbour averaging (N(x) = {||x'-x|| <= eps})."""
    from simxir.dynamics.experiments import iris_experiment  # noqa: PLC0415 - start-up time (scipy)

    if seeds < 1:
        raise UserError(f"--seeds: expected >= 1, got {seeds}")
    r = iris_experiment(out, eps=eps, seeds=seeds)
    _emit(r, json_out, f"iris: k-means accuracy {r['before']:.3f} before, best {r['after_best']:.3f} after "
          f"(paper 0.89 -> 0.96); files {r.get('files')}")


def embeddings_command(
    features: str | None = typer.Option(None, "--features", help="features .npz (the `simxir eval --features` format)"),
    data: str | None = typer.Option(None, "--data", help="images .npz (raw pixels), or dataset SPEC with --encoder"),
    encoder: str | None = typer.Option(None, "--encoder", help="encoder checkpoint (needs --data SPEC)"),
    k_graph: int = typer.Option(10, "--knn", help="k of the kNN graph over the features"),
    k_eval: int = typer.Option(20, "--k-eval", help="k of the kNN classifier"),
    steps: int = typer.Option(20, "--steps"), every: int = typer.Option(1, "--every"),
    spherical: bool = typer.Option(False, "--spherical"),
    max_train: int | None = typer.Option(None, "--max-train"), max_test: int | None = typer.Option(None, "--max-test"),
    out: str | None = typer.Option("dynamics_out", "--out", help=OUT_DIR_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """kNN accuracy of features smoothed by neighbour averaging, per step."""
    from simxir.dynamics.experiments import embeddings_experiment, load_embedding_inputs  # noqa: PLC0415 - start-up time (scipy)

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
