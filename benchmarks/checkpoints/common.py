"""What the verify_*.py scripts share: a result row of simxir's load and the results table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def check_row(layout: str, report: Any, feature_difference: float) -> dict[str, Any]:
    """One row of the ``check`` stage: what simxir's load report said, and the feature difference."""
    row = {"layout": layout, "format": report.format, "arch": report.arch, "loaded": len(report.loaded),
           "dropped": len(report.dropped), "network": report.network, "feature_difference": feature_difference}
    print(row)
    return row


def write_table(rows: list[dict[str, Any]], name: str, library: str, title: str) -> str:
    """``results/checkpoints/<name>.md`` (the table) and ``<name>.json`` (the rows) from the rows of
    the ``roundtrip`` stage; returns the table."""
    lines = [f"| {library} checkpoint | detected | arch | loaded / dropped | network as loaded | feature diff | "
             f"export into the original file: strict load in {library}'s model, feature diff |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['layout']} | {r['format']} | {r['arch']} | {r['loaded']} / {r['dropped']} | "
                     f"{r['network']} | {r['feature_difference']:.2g} | "
                     f"{'yes' if r['export_strict_load'] else 'no'}, {r['export_feature_difference']:.2g} |")
    text = "\n".join(lines)
    dest = ROOT / "results" / "checkpoints"
    dest.mkdir(parents=True, exist_ok=True)
    (dest / f"{name}.md").write_text(f"# {title}\n\n`benchmarks/checkpoints/verify_{name}.py` (its docstring has "
                                     f"the commands; `run_all.sh` runs them all).\n\n{text}\n")
    (dest / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print(text)
    return text


def roundtrip_rows(out: Path, strict_load: Callable[[str], dict[str, Any]]) -> None:
    """The ``roundtrip`` stage over the rows of ``out/check.json``: ``strict_load(layout)`` loads
    simxir's export into the source library's model with ``strict=True`` (raising on any missing or
    unexpected key) and returns at least ``export_feature_difference``; rows -> roundtrip.json."""
    rows = json.loads((out / "check.json").read_text())
    for row in rows:
        found = strict_load(row["layout"])    # raises when the strict load fails
        row["export_strict_load"] = True
        row.update(found)
        print(row)
    (out / "roundtrip.json").write_text(json.dumps(rows, indent=1))


def run_stage(stages: dict[str, Callable[..., None]], argv: list[str]) -> None:
    """``SCRIPT STAGE PATH...``: the stage's function called with the paths."""
    stages[argv[1]](*map(Path, argv[2:]))
