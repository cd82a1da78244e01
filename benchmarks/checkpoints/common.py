"""What the verify_*.py scripts share: a result row of simxir's load, the results table, and for the
ViT scripts the fixed inputs, the features on them and the check / export-difference loops."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def vit_input(size: int) -> Any:
    """The fixed input of the ViT verifications at one image size (two images, seeded by the size)."""
    import torch  # noqa: PLC0415 - the non-ViT scripts do not need it at import

    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(size))


def vit_features(forward: Callable[[Any], Any], sizes: tuple[int, ...]) -> dict[str, list]:
    """``forward`` (a model in eval mode, or any callable) on :func:`vit_input` at each size."""
    import torch  # noqa: PLC0415

    with torch.no_grad():
        return {str(s): forward(vit_input(s)).tolist() for s in sizes}


def max_feature_difference(features: dict[str, list], want: dict[str, list]) -> float:
    """The largest absolute difference between two ``{size: features}`` dicts, over ``features``' sizes."""
    import torch  # noqa: PLC0415

    return max(float((torch.tensor(features[s]) - torch.tensor(want[s])).abs().max()) for s in features)


def check_vit(out: Path, name: str, fmt: str, want: dict[str, list], forced: str | None = None) -> dict[str, Any]:
    """The ``check`` stage for one ViT file ``out/NAME.pth``: simxir loads it (as ``fmt``, detected or
    ``forced``), its features are compared with the source's (``want``), and it is exported back into
    the original file (``NAME.back.pth``) and alone (``NAME.bare.pth``); returns the row."""
    from simxir.models import export_encoder, load_encoder  # noqa: PLC0415 - simxir's venv only

    model, report = load_encoder(out / f"{name}.pth", format=forced)
    assert report.format == fmt, (name, report.format)
    diff = max_feature_difference(vit_features(model.eval(), tuple(map(int, want))), want)
    export_encoder(model, out / f"{name}.back.pth", fmt, template=out / f"{name}.pth")
    export_encoder(model, out / f"{name}.bare.pth", fmt)
    return check_row(name, report, diff)


def export_difference(out: Path, name: str, want: dict[str, list],
                      source_features: Callable[[dict], dict[str, list]]) -> dict[str, Any]:
    """The ``roundtrip`` result for one ViT file: ``source_features(obj)`` strict-loads each export
    (``NAME.back.pth``, ``NAME.bare.pth``) into the source's model and returns its features."""
    import torch  # noqa: PLC0415

    diffs = [max_feature_difference(source_features(torch.load(out / f"{name}.{kind}.pth", weights_only=True)), want)
             for kind in ("back", "bare")]
    return {"export_feature_difference": max(diffs)}


def check_file(out: Path, name: str, suffix: str, x: Any, fmt: str | None = None) -> tuple[dict[str, Any], Any]:
    """The ``check`` stage for one ResNet file ``out/NAME{suffix}``: simxir loads it (layout detected),
    its features on ``x`` are compared with the source's (``out/NAME.features.pt``), and it is exported
    back into a copy of the original file (``NAME.export{suffix}``, in ``fmt`` or the detected layout);
    returns the row and the loaded model."""
    import sys  # noqa: PLC0415

    import torch  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "src"))
    from simxir.models import export_encoder, load_encoder  # noqa: PLC0415 - simxir's venv only

    model, report = load_encoder(out / f"{name}{suffix}")
    model.eval()
    with torch.no_grad():
        diff = float((model(x) - torch.load(out / f"{name}.features.pt")).abs().max())
    export_encoder(model, out / f"{name}.export{suffix}", fmt or report.format, template=out / f"{name}{suffix}")
    return check_row(name, report, diff), model


def write_check(out: Path, rows: list[dict[str, Any]]) -> None:
    (out / "check.json").write_text(json.dumps(rows, indent=1))


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
