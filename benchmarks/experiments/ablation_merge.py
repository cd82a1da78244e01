"""Merge the two halves written by ablation_cifar.sh into one table in the paper's row order.

Usage (repo root): python benchmarks/experiments/ablation_merge.py [results/analysis/ablation-cifar-10ep]
Reads PREFIX-a/ablation.json and PREFIX-b/ablation.json, writes PREFIX/ablation.{json,md}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from simxir.experiments.ablation import PAPER_ROWS, format_table
from simxir.io import atomic_write_json


def main() -> None:
    prefix = Path(sys.argv[1] if len(sys.argv) > 1 else "results/analysis/ablation-cifar-10ep")
    parts = [json.loads((Path(f"{prefix}-{p}") / "ablation.json").read_text()) for p in "ab"]
    rows = {r["row"]: r for part in parts for r in part["rows"]}
    order = [r.name for r in PAPER_ROWS if r.name in rows]
    merged = {**parts[0], "rows": [rows[n] for n in order], "parts": [f"{prefix}-a", f"{prefix}-b"]}
    prefix.mkdir(parents=True, exist_ok=True)
    atomic_write_json(merged, prefix / "ablation.json")
    table = format_table(merged)
    (prefix / "ablation.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
