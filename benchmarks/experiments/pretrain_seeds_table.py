"""Two-seed summary of the final pretraining table: best cosine kNN and linear top-1 against the
random-init encoder of the same seed (the runs' own initial weights).

Usage (repo root, after pretrain_table.py wrote both JSONs):
    python benchmarks/experiments/pretrain_seeds_table.py results/pretrain/results-10ep.json \
        results/pretrain/results-10ep-seed1.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAMES = {"simclr": "SimCLR", "moco": "MoCo v2", "simsiam-adamw": "SimSiam", "byol-projbn-adamw-tau0.9": "BYOL",
         "barlow_twins-adamw": "Barlow Twins", "vicreg-adamw": "VICReg", "bridge": "bridge"}


def best(ev: dict) -> float:
    return max(ev["knn"]["cosine"].values())


def main() -> None:
    seeds = [json.loads(Path(p).read_text()) for p in sys.argv[1:]]
    head = "| method | " + " | ".join(f"kNN seed {i} (vs random {best(s['random_init']):.1f})"
                                      for i, s in enumerate(seeds))
    head += " | mean kNN gain | " + " | ".join(f"linear seed {i} (vs {s['random_init']['linear']['top1']:.1f})"
                                               for i, s in enumerate(seeds)) + " |"
    print(head)
    print("|---" * (2 + 2 * len(seeds)) + "|")
    for run, label in NAMES.items():
        cells, gains, lin = [], [], []
        for s in seeds:
            ev = s["runs"].get(run, {}).get("eval")
            if ev is None:
                cells.append("—")
                lin.append("—")
                continue
            g = best(ev) - best(s["random_init"])
            gains.append(g)
            cells.append(f"{best(ev):.1f} ({g:+.1f})")
            lt, rt = ev["linear"]["top1"], s["random_init"]["linear"]["top1"]
            lin.append(f"{lt:.1f} ({lt - rt:+.1f})")
        mean = f"{sum(gains) / len(gains):+.1f}" if gains else "—"
        print(f"| {label} | " + " | ".join(cells) + f" | {mean} | " + " | ".join(lin) + " |")


if __name__ == "__main__":
    main()
