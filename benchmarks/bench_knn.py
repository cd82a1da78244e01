"""Benchmark: the whole kNN table (k = 5..21 x cosine/euclidean = 12 columns) with simxir's blocked
one-pass kNN vs scikit-learn's brute-force KNeighborsClassifier run once per (k, metric).

Both run in the same invocation on the same random features (10 classes, Gaussian blobs), each in
its own child process, timed by wall clock and by the child's CPU time (user + sys, less sensitive
to other load on a shared machine), so that its peak RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss at the end
of the child, which includes the interpreter, torch and the feature arrays) is measured alone.
Prints a table and one JSON object (--out DIR writes them). Default 10,000 train / 2,000 test, dim 512;
``--full`` is 50,000 / 10,000 (the size of CIFAR-10), which takes several minutes for sklearn.

    python benchmarks/bench_knn.py            # ~30 s
    python benchmarks/bench_knn.py --full     # the target: >= 15x faster, peak < 2 GB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from timing import add_out, collect, median, paired_ratio, report

KS = (5, 7, 11, 15, 17, 21)
METRICS = ("cosine", "euclidean")


def _data(n_train: int, n_test: int, dim: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(10, dim)).astype(np.float32) * 0.15
    ytr = rng.integers(0, 10, n_train)
    yte = rng.integers(0, 10, n_test)
    xtr = centers[ytr] + rng.standard_normal((n_train, dim), dtype=np.float32)
    xte = centers[yte] + rng.standard_normal((n_test, dim), dtype=np.float32)
    return xtr, ytr, xte, yte


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0   # Linux: KiB


def worker(which: str, n_train: int, n_test: int, dim: int, chunk: int | None, weighted: bool) -> dict:
    """Run one side in this (child) process; return timing, accuracies and peak RSS."""
    xtr, ytr, xte, yte = _data(n_train, n_test, dim)
    rss_data = _rss_mb()
    if which == "simxir":
        import torch

        from simxir.eval.knn import knn_classify
        trf, trl, tef, tel = (torch.from_numpy(a) for a in (xtr, ytr, xte, yte))
        knn_classify(trf[:500], trl[:500], tef[:50], tel[:50], ks=KS, show_progress=False)  # warm-up
        rss_data = _rss_mb()
        t0, c0 = time.perf_counter(), _cpu_s()
        res = knn_classify(trf, trl, tef, tel, ks=KS, chunk_size=chunk,
                           weighted_temperature=0.07 if weighted else None, show_progress=False)
        seconds = time.perf_counter() - t0
        acc = res["knn"]
    else:
        from sklearn.neighbors import KNeighborsClassifier
        KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(xtr[:500], ytr[:500]).predict(xte[:50])
        rss_data = _rss_mb()
        acc = {m: {} for m in METRICS}
        t0, c0 = time.perf_counter(), _cpu_s()
        for m in METRICS:
            for k in KS:
                clf = KNeighborsClassifier(n_neighbors=k, algorithm="brute", metric=m, weights="uniform")
                pred = clf.fit(xtr, ytr).predict(xte)
                acc[m][str(k)] = 100.0 * float((pred == yte).mean())
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_seconds": _cpu_s() - c0, "peak_rss_mb": _rss_mb(), "rss_before_mb": rss_data,
            "acc": acc}


def _child(which: str, args: argparse.Namespace, weighted: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", which, "--n-train", str(args.n_train), "--n-test",
           str(args.n_test), "--dim", str(args.dim)]
    if args.chunk:
        cmd += ["--chunk", str(args.chunk)]
    if weighted:
        cmd += ["--weighted"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ, SIMXIR_QUIET="1"))
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="50,000 train / 10,000 test (default 10,000 / 2,000)")
    ap.add_argument("--n-train", type=int, default=None)
    ap.add_argument("--n-test", type=int, default=None)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--chunk", type=int, default=None, help="test rows per block (default: simxir's)")
    ap.add_argument("--worker", choices=("simxir", "sklearn"), help=argparse.SUPPRESS)
    ap.add_argument("--weighted", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=1, help="interleaved rounds of the three children")
    add_out(ap)
    args = ap.parse_args()
    args.n_train = args.n_train or (50_000 if args.full else 10_000)
    args.n_test = args.n_test or (10_000 if args.full else 2_000)
    if args.worker:
        print(json.dumps(worker(args.worker, args.n_train, args.n_test, args.dim, args.chunk, args.weighted)))
        return

    runs: dict[str, list[dict]] = {"simxir": [], "simxir_w": [], "sklearn": []}
    collect({"simxir": lambda: runs["simxir"].append(_child("simxir", args, weighted=False)) or 0.0,
             "simxir_w": lambda: runs["simxir_w"].append(_child("simxir", args, weighted=True)) or 0.0,
             "sklearn": lambda: runs["sklearn"].append(_child("sklearn", args, weighted=False)) or 0.0}, args.repeats)
    wall = {k: [r["seconds"] for r in v] for k, v in runs.items()}
    cpu = {k: [r["cpu_seconds"] for r in v] for k, v in runs.items()}
    ours, ours_w, skl = runs["simxir"][-1], runs["simxir_w"][-1], runs["sklearn"][-1]
    diffs = [abs(ours["acc"][m][str(k)] - skl["acc"][m][str(k)]) for m in METRICS for k in KS]
    rows = [("sklearn brute, 12 fits (k x metric)", "sklearn"), ("simxir one pass, 12 columns", "simxir"),
            ("simxir one pass, 12 columns + 6 weighted", "simxir_w")]
    lines = [f"kNN table: {args.n_train} train x {args.n_test} test, dim {args.dim}, ks {list(KS)}, "
             f"torch threads={os.environ.get('OMP_NUM_THREADS', 'default')}, {args.repeats} round(s)", "",
             "| method | wall s | speed-up | CPU s | CPU ratio | peak RSS MB | extra MB |",
             "|---|---|---|---|---|---|---|"]
    for name, k in rows:
        r = runs[k][-1]
        lines.append(f"| {name} | {median(wall[k]):.3f} | {paired_ratio(wall['sklearn'], wall[k]):.1f}x | "
                     f"{median(cpu[k]):.2f} | {paired_ratio(cpu['sklearn'], cpu[k]):.1f}x | {r['peak_rss_mb']:.0f} | "
                     f"{r['peak_rss_mb'] - r['rss_before_mb']:.0f} |")
    lines.append(f"max |acc simxir - acc sklearn| over the 12 columns: {max(diffs):.3f} points "
                 f"(vote ties: sklearn takes the smallest label, simxir the tied class nearest)")
    report("bench_knn", {
        "n_train": args.n_train, "n_test": args.n_test, "dim": args.dim, "repeats": args.repeats,
        "ks": list(KS), "metrics": list(METRICS),
        "sklearn_s": round(median(wall["sklearn"]), 4), "simxir_s": round(median(wall["simxir"]), 4),
        "simxir_with_weighted_s": round(median(wall["simxir_w"]), 4),
        "speedup": round(paired_ratio(wall["sklearn"], wall["simxir"]), 2),
        "speedup_with_weighted": round(paired_ratio(wall["sklearn"], wall["simxir_w"]), 2),
        "sklearn_cpu_s": round(median(cpu["sklearn"]), 3), "simxir_cpu_s": round(median(cpu["simxir"]), 3),
        "cpu_time_ratio": round(paired_ratio(cpu["sklearn"], cpu["simxir"]), 2),
        "simxir_peak_rss_mb": round(ours_w["peak_rss_mb"], 1),
        "simxir_extra_rss_mb": round(ours_w["peak_rss_mb"] - ours_w["rss_before_mb"], 1),
        "sklearn_peak_rss_mb": round(skl["peak_rss_mb"], 1),
        "max_acc_diff_points": round(max(diffs), 4),
        "target_speedup": 15.0, "target_peak_rss_mb": 2048,
    }, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
