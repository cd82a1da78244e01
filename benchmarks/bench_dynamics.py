"""Benchmark of the dynamics lab: vectorized steps vs the paper's literal loop, and scale.

Part 1 (same run, ratios): n=4,000 points, radius eps=0.2 (~800 neighbours/point); one step of the
literal pseudocode (loop over points, full distance pass per point) vs the sparse operator
applied with scipy and with torch CSR; same result (max abs diff after the same steps).
Part 2 (scale): n=1,000,000 inputs in 2-D (four separated squares -> 4 groups), kNN k=10, 100
steps, metrics every 10 (exact, and with a 20k-point subsample per group), reps in 2-D and in 128-D
(10 steps by default, 100 with ``--full``) (the graph is always built on the 2-D inputs;
``--faiss-n`` adds a 128-D-input graph build with the approximate faiss index). Each scale
configuration runs in a fresh subprocess so its peak RSS (ru_maxrss) is its own.

    python benchmarks/bench_dynamics.py            # default run, about 1 min on 2 idle cores
                                                   # (about 4 min at load average 10)
    python benchmarks/bench_dynamics.py --quick    # smaller sizes, for a smoke run
    python benchmarks/bench_dynamics.py --full --faiss-n 100000   # 128-D reps for 100 steps too
Prints a table and then one JSON object (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from timing import add_out, measure, median, report

os.environ.setdefault("SIMXIR_QUIET", "1")

from simxir.dynamics.groups import components  # noqa: E402
from simxir.dynamics.metrics import GroupMetrics  # noqa: E402
from simxir.dynamics.neighbourhoods import knn_operator, radius_operator  # noqa: E402
from simxir.dynamics.steps import literal_step, run  # noqa: E402


def part_vectorized(n: int, eps: float, literal_steps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.675, (n, 2))                # square side 0.675 -> ~820 neighbours at eps=0.2
    f0 = rng.standard_normal((n, 2))
    t = time.perf_counter()
    op = radius_operator(x, eps)
    t_graph = time.perf_counter() - t
    # literal loop
    t = time.perf_counter()
    lit = f0.copy()
    for _ in range(literal_steps):
        lit = literal_step(x, lit, eps)
    t_lit = (time.perf_counter() - t) / literal_steps
    res = {"n": n, "eps": eps, "mean_neighbours": float(op.degrees().mean()), "graph_build_s": t_graph,
           "literal_s_per_step": t_lit}
    for backend in ("scipy", "torch"):
        op.backend = backend
        for dtype in (torch.float64, torch.float32):
            f = torch.from_numpy(f0).to(dtype)
            g = f
            for _ in range(literal_steps):
                g = op.apply(g)
            diff = float(np.abs(g.double().numpy() - lit).max())
            per = median(measure({"apply": lambda op=op, f=f: op.apply(f)}, 20)["apply"])
            name = f"{backend}_{str(dtype).split('.')[-1]}"
            res[name] = {"s_per_step": per, "speedup_vs_literal": t_lit / per, "max_abs_diff_vs_literal": diff}
    return res


def _blocks(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    return (centres[np.arange(n) % 4] + rng.uniform(0, 1, (n, 2))).astype(np.float32)


def scale_child(n: int, k: int, steps: int, every: int, dim: int, index: str, input_dim: int,
                subsample: int | None = None) -> dict:
    """One scale configuration (run in its own process)."""
    torch.manual_seed(0)
    x = _blocks(n, 0)
    if input_dim > 2:
        rng = np.random.default_rng(1)
        x = np.concatenate([x, 0.01 * rng.standard_normal((n, input_dim - 2)).astype(np.float32)], 1)
    t = time.perf_counter()
    op = knn_operator(x, k, index=index)  # type: ignore[arg-type]
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    lab = components(op)
    t_comp = time.perf_counter() - t
    del x
    out = {"n": n, "k": k, "steps": steps, "every": every, "reps_dim": dim, "input_dim": input_dim,
           "index": index, "metrics_subsample": subsample, "graph_build_s": t_graph, "components_s": t_comp,
           "num_groups": int(lab.max() + 1),
           "operator_mb": op.nbytes() / 2**20}
    if steps == 0:
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return out
    g = torch.Generator().manual_seed(0)
    f0 = torch.randn(n, dim, generator=g)
    f0[:, 0] += 10.0 * torch.from_numpy(lab).float()   # separated group means
    gm = GroupMetrics(lab, max_pair_groups=8, subsample=subsample)
    metric_time = [0.0]

    def timed(f: torch.Tensor) -> dict:
        t0 = time.perf_counter()
        r = gm(f)
        metric_time[0] += time.perf_counter() - t0
        return r

    t = time.perf_counter()
    res = run(op, f0, steps, every=every, metrics=timed, show_progress=False)
    t_run = time.perf_counter() - t
    n_calls = len(res.steps)
    out.update({
        "steps_s_total": t_run - metric_time[0], "s_per_step": (t_run - metric_time[0]) / steps,
        "metric_calls": n_calls, "metrics_s_total": metric_time[0], "metrics_s_per_call": metric_time[0] / n_calls,
        "whole_run_s": t_graph + t_comp + t_run,
        "diameter_exact": bool(res.history["diameter_exact"].all()),
        "min_distance_exact": bool(res.history["min_distance_exact"].all()),
        "max_diameter_first_last": [float(res.history["diameter"][0].max()), float(res.history["diameter"][-1].max())],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    return out


def spawn(**kw) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(kw)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return {"config": kw, "error": r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"rc={r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n", type=int, default=None, help="scale n (default 1,000,000; 100,000 with --quick)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--steps128", type=int, default=10, help="steps of the 128-D reps run (100 with --full)")
    ap.add_argument("--full", action="store_true", help="128-D reps run with --steps steps (several minutes)")
    ap.add_argument("--subsample", type=int, default=20000, help="metrics subsample per group in the 128-D run")
    ap.add_argument("--compare-subsample", action="store_true", help="also run 2-D with subsampled metrics")
    ap.add_argument("--faiss-n", type=int, default=0, help="also time a 128-D-input faiss graph build at this n")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    add_out(ap)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(scale_child(**json.loads(a.child))))
        return
    n_small = 1000 if a.quick else 4000
    n_big = a.n or (100_000 if a.quick else 1_000_000)
    result = {"cpu_threads": torch.get_num_threads(), "note": "CPU shared with other jobs while measured; "
              "compare ratios within this run", "loadavg_start": os.getloadavg()}
    result["vectorized"] = part_vectorized(n_small, 0.2, literal_steps=2 if a.quick else 3)
    sub = a.subsample or None
    configs = [dict(dim=2, subsample=None), dict(dim=2, subsample=sub),
               dict(dim=128, subsample=sub, steps=a.steps if a.full else a.steps128)]
    if not (a.compare_subsample and sub):
        configs = [configs[0], configs[2]]
    result["scale"] = [spawn(**{"n": n_big, "k": 10, "steps": a.steps, "every": 10, "index": "kdtree",
                                "input_dim": 2, **c}) for c in configs]
    if a.faiss_n:
        result["scale"].append(spawn(n=a.faiss_n, k=10, steps=0, every=10, dim=2, index="faiss", input_dim=128))
    result["loadavg_end"] = os.getloadavg()

    lines: list[str] = []
    v = result["vectorized"]
    lines.append(f"# vectorized vs literal: n={v['n']}, eps={v['eps']}, {v['mean_neighbours']:.0f} neighbours/point, "
          f"graph build {v['graph_build_s']:.3f}s")
    lines.append(f"{'method':<16}{'s/step':>12}{'speedup':>12}{'max|diff|':>12}")
    lines.append(f"{'literal loop':<16}{v['literal_s_per_step']:>12.4f}{1.0:>12.1f}{0.0:>12.1e}")
    for name in ("scipy_float64", "scipy_float32", "torch_float64", "torch_float32"):
        r = v[name]
        lines.append(f"{name:<16}{r['s_per_step']:>12.5f}{r['speedup_vs_literal']:>12.1f}{r['max_abs_diff_vs_literal']:>12.1e}")
    lines.append("# scale (each row its own process)")
    lines.append(f"{'n':>9}{'in_d':>6}{'rep_d':>6}{'steps':>6}{'subsmp':>7}{'index':>8}{'graph s':>9}{'s/step':>9}"
          f"{'metric s/call':>14}"
          f"{'whole s':>9}{'peak MB':>9}{'exact':>7}")
    for r in result["scale"]:
        if "error" in r:
            lines.append(f"error: {r}")
            continue
        lines.append(f"{r['n']:>9}{r['input_dim']:>6}{r['reps_dim']:>6}{r['steps']:>6}{str(r['metrics_subsample']):>7}{r['index']:>8}{r['graph_build_s']:>9.2f}"
              f"{r.get('s_per_step', float('nan')):>9.4f}{r.get('metrics_s_per_call', float('nan')):>14.3f}"
              f"{r.get('whole_run_s', float('nan')):>9.2f}{r['peak_rss_mb']:>9.0f}"
              f"{str(r.get('diameter_exact', '-'))[0] + '/' + str(r.get('min_distance_exact', '-'))[0]:>7}")
    report("bench_dynamics", result, "\n".join(lines), a.out)


if __name__ == "__main__":
    main()
