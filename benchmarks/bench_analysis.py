"""Cost of the per-epoch decorrelation monitor vs numpy's np.corrcoef (same run; timing.py's rounds).

The engine calls ``simxir.analysis.decorrelation`` once per monitored epoch on the projector outputs
of a fixed eval set (n x d). Baseline: ``((np.corrcoef(x, rowvar=False) - I)**2).sum()`` in float64
on the same array (the obvious implementation). Both values must agree to 1e-9 relative.
Also times the predictor diagnostics of one d x d matrix (all four, as ``simxir analyze --predictor``).

    OMP_NUM_THREADS=1 python benchmarks/bench_analysis.py [--repeats 5] [--shapes 512x128,512x1024]
        [--pred-dim-max 512] [--threads N] [--out results/analysis]

On a CPU loaded by other processes torch's 2-thread OpenMP pool stalls on its barriers (100x slower
small ops here); compare with one thread for both (OMP_NUM_THREADS=1) when the machine is shared.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from simxir.analysis import decorrelation, predictor_diagnostics
from timing import add_out, measure, median, paired_ratio, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--shapes", default="512x128,512x1024")
    ap.add_argument("--pred-dim-max", type=int, default=512, help="skip predictor timing above this d")
    add_out(ap)
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
        ts = measure({"ours": lambda xt=xt: decorrelation(xt), "base": baseline}, args.repeats)
        w = rng.standard_normal((d, d))
        t_pred = (median(measure({"pred": lambda w=w: predictor_diagnostics(w)}, max(1, args.repeats // 2))["pred"])
                  if d <= args.pred_dim_max else float("nan"))
        rows.append({"n": n, "d": d, "decorrelation_s": median(ts["ours"]), "np_corrcoef_s": median(ts["base"]),
                     "speedup_vs_corrcoef": paired_ratio(ts["base"], ts["ours"]), "predictor_diagnostics_s": t_pred})
    lines = ["| n | d | decorrelation | np.corrcoef | speed-up | W_p diagnostics |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['n']} | {r['d']} | {r['decorrelation_s'] * 1e3:.1f} ms | {r['np_corrcoef_s'] * 1e3:.1f} ms | "
              f"{r['speedup_vs_corrcoef']:.2f}x | {r['predictor_diagnostics_s'] * 1e3:.1f} ms |" for r in rows]
    report("bench_analysis", {"torch_threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows},
           "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
