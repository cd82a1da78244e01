"""The benchmarks' one timing helper and output convention.

Timing: :func:`measure` (or :func:`collect`, for candidates that measure a rate themselves) runs
every candidate once per round, in turn, for a number of rounds (after an untimed warm-up round for
:func:`measure`), so that a disturbance from other processes hits all candidates of a round alike; a
candidate's time is the median over rounds (:func:`median`) and a ratio is the median over rounds of
the ratio within each round (:func:`paired_ratio`), never a ratio of two medians taken at different
moments.

Output: every script takes ``--out DIR`` (:func:`add_out`); :func:`report` prints the table and one
JSON line, and with ``--out`` writes ``DIR/NAME.json`` and ``DIR/NAME.md`` (benchmarks/README.md
maps each script to its files under ``results/``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from simxir.io import json_safe


def measure(candidates: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each candidate, one list entry per round (``rounds`` >= 1)."""
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(warmup + max(1, rounds)):
        for name, fn in candidates.items():
            t = time.perf_counter()
            fn()
            if r >= warmup:
                times[name].append(time.perf_counter() - t)
    return times


def collect(candidates: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """What each candidate returns (a rate it measured itself, e.g. the engine's images per second), one
    entry per round, the candidates in turn in every round, as :func:`measure` times them."""
    values: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(max(1, rounds)):
        for name, fn in candidates.items():
            values[name].append(float(fn()))
    return values


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median over rounds of ``values[i] / baseline[i]`` (the two measured in the same round)."""
    return statistics.median(v / b for v, b in zip(values, baseline, strict=True)) if values else math.nan


def add_out(ap: argparse.ArgumentParser, default: str | None = None) -> None:
    ap.add_argument("--out", default=default, help="folder for NAME.json and NAME.md (default: print only)")


def report(name: str, payload: dict[str, Any], table: str, out: str | Path | None) -> None:
    """Print ``table`` and ``payload`` as one JSON line; with ``out`` also write ``out/name.{json,md}``."""
    payload = json_safe({"benchmark": name, **payload})
    print(table)
    print(json.dumps(payload))
    if out:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
        (folder / f"{name}.md").write_text(table.rstrip() + "\n")
        print(f"wrote {folder / name}.json and .md")
