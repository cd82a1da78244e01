"""``simxir inspect-encoder`` / ``simxir export-encoder``: read any supported SSL checkpoint,
report what its backbone is, and write it in another toolchain's layout."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from simxir.errors import UserError
from simxir.models import FORMATS, export_encoder, load_encoder, verify_export
from simxir.progress import log

_FMT_HELP = f"source layout, detected when omitted: {', '.join(FORMATS)}"


def inspect_command(
    checkpoint: Path = typer.Argument(..., help="checkpoint file (.pth/.ckpt/.torch/.safetensors)"),
    backbone: str = typer.Option(None, "--backbone", help="architecture, inferred when omitted"),
    fmt: str = typer.Option(None, "--format", help=_FMT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="trust the file: allow full unpickling"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Load a checkpoint's online backbone strictly and report format, arch, loaded/dropped keys."""
    model, report = load_encoder(checkpoint, backbone=backbone, format=fmt,
                                 allow_pickle=allow_pickle)
    info = {**report.to_dict(), "feature_dim": int(model.feature_dim),
            "num_params": sum(p.numel() for p in model.parameters())}
    if json_out:
        print(json.dumps(info))
    else:
        print(report.summary())
        print(f"  feature_dim {info['feature_dim']}, {info['num_params']:,} parameters")


def export_command(
    checkpoint: Path = typer.Argument(..., help="source checkpoint (any supported layout)"),
    output: Path = typer.Argument(..., help="file to write"),
    to: str = typer.Option(..., "--to", help=f"target layout: {', '.join(FORMATS)}"),
    template: Path = typer.Option(None, "--template",
                                  help="original checkpoint of the target toolchain: write a copy "
                                       "of it with the online backbone replaced"),
    backbone: str = typer.Option(None, "--backbone", help="architecture, inferred when omitted"),
    fmt: str = typer.Option(None, "--format", help=_FMT_HELP),
    allow_pickle: bool = typer.Option(False, "--allow-pickle",
                                      help="trust the files: allow full unpickling"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Convert an encoder checkpoint to another toolchain's layout (verified by reloading it)."""
    if to not in FORMATS:
        raise UserError(f"--to {to!r}: expected one of {', '.join(FORMATS)}")
    if output.resolve() == checkpoint.resolve():
        raise UserError(f"{output}: output would overwrite the source checkpoint")
    model, report = load_encoder(checkpoint, backbone=backbone, format=fmt,
                                 allow_pickle=allow_pickle)
    log(report.summary())
    # written beside the output and verified there; only a verified export takes the output's name
    partial = output.with_name(f".partial-{output.name}")
    try:
        written = export_encoder(model, partial, to, template=template, allow_pickle=allow_pickle)
        back_report, diff = verify_export(model, partial, written, allow_pickle=allow_pickle)
        try:
            os.replace(partial, output)
        except OSError as exc:   # named by the output the user gave, not by the partial file
            raise OSError(exc.errno, exc.strerror, str(output)) from None
    except UserError as exc:
        raise UserError(str(exc).replace(str(partial), str(output))) from None
    finally:
        partial.unlink(missing_ok=True)
    result = {"source": str(checkpoint), "source_format": report.format, "arch": report.arch,
              "output": str(output), "format": written,
              "template": str(template) if template else None,
              "tensors": len(back_report.loaded), "verified": True, "max_feature_difference": diff}
    if json_out:
        print(json.dumps(result))
    else:
        print(f"wrote {output} ({written}, {report.arch}, {len(back_report.loaded)} tensors, "
              f"verified by re-loading: same tensors, same features)")
