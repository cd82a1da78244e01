"""Cost of the per-epoch decorrelation monitor vs numpy's np.corrcoef (same run; min of repeats).

The engine calls ``simxir.analysis.decorrelation`` once per monitored epoch on the projector outputs
of a fixed eval set (n x d). Baseline: ``((np.corrcoef(x, rowvar=False) - I)**2).sum()`` in float64
on the same array (the obvious implementation). Both values must agree to 1e-9 relative.
Also times the predictor diagnostics of one d x d matrix (all four, as ``simxir analyze --predictor``).

    OMP_NUM_THREADS=1 python benchmarks/bench_analysis.py [--repeats 5] [--shapes 512x128,512x1024]
        [--pred-dim-max 512] [--threads N]

On a CPU loaded by other processes torch's 2-thread OpenMP pool stalls on its barriers (100x slower
small ops here); compare with one thread for both (OMP_NUM_THREADS=1) when the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from simxir.analysis import decorrelation, predictor_diagnostics


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)  # the least-disturbed run: the CPU is shared


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--shapes", default="512x128,512x1024")
    ap.add_argument("--pred-dim-max", type=int, default=512, help="skip predictor timing above this d")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for shape in args.shapes.split(","):
        n, d = (int(v) for v in shape.split("x"))
        x = (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / np.sqrt(d)).astype(np.float32)
        xt = torch.from_numpy(x)
        eye = np.eye(d)

        def baseline(x: np.ndarray = x, eye: np.ndarray = eye) -> float:
            return float(((np.corrcoef(x.astype(np.float64), rowvar=False) - eye) ** 2).sum())

        ours, ref = decorrelation(xt), baseline()
        assert abs(ours - ref) <= 1e-9 * abs(ref), (ours, ref)
        t_ours = _time(lambda xt=xt: decorrelation(xt), args.repeats)
        t_base = _time(baseline, args.repeats)
        w = rng.standard_normal((d, d))
        t_pred = (_time(lambda w=w: predictor_diagnostics(w), max(1, args.repeats // 2))
                  if d <= args.pred_dim_max else float("nan"))
        rows.append({"n": n, "d": d, "decorrelation_s": t_ours, "np_corrcoef_s": t_base,
                     "speedup_vs_corrcoef": t_base / t_ours, "predictor_diagnostics_s": t_pred})
    print(f"{'n':>6} {'d':>6} {'decorrelation':>14} {'np.corrcoef':>12} {'ratio':>7} {'W_p diag.':>10}")
    for r in rows:
        print(f"{r['n']:6d} {r['d']:6d} {r['decorrelation_s'] * 1e3:11.1f} ms {r['np_corrcoef_s'] * 1e3:9.1f} ms "
              f"{r['speedup_vs_corrcoef']:6.2f}x {r['predictor_diagnostics_s'] * 1e3:7.1f} ms")
    clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
    print(json.dumps({"benchmark": "analysis", "torch_threads": torch.get_num_threads(), "rows": clean}))


if __name__ == "__main__":
    main()
