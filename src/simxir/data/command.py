"""``simxir data info SPEC``: what a dataset spec loads to; ``simxir data arrange-val``: ImageNet's flat
validation folder into class folders."""

from __future__ import annotations

import json

import typer

from simxir.data.dataset import dataset_info
from simxir.data.index import arrange_val, undo_arrange_val
from simxir.data.load import SCHEMES, open_dataset
from simxir.data.stream import LoaderConfig
from simxir.errors import UserError

data_app = typer.Typer(help="Inspect datasets (spec: " + ", ".join(SCHEMES) + ").", no_args_is_help=True,
                       add_completion=False)


@data_app.callback()
def _data() -> None:
    """Inspect datasets: what a spec loads to."""


@data_app.command("info")
def info_command(
    spec: str = typer.Argument(..., help="dataset spec, e.g. digits, npz:FILE, cifar10:DIR, folder:DIR, "
                               "images:DIR, files:LIST"),
    image_size: int = typer.Option(None, "--image-size", help="resize images to this square size"),
    stream: str = typer.Option("auto", "--stream", help="folder data: on (index only; mean/std from a "
                               "sample), off (decode all), auto (stream when it would not fit in memory)"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Load SPEC and print its name, split sizes, image size, classes and train mean/std."""
    if stream not in ("auto", "on", "off"):
        raise UserError(f"--stream: expected auto, on or off, got {stream!r}")
    ds = open_dataset(spec, image_size or 0, LoaderConfig(stream=stream))  # type: ignore[arg-type]
    info = {**dataset_info(ds, spec), "streamed": bool(getattr(ds, "streamed", False))}
    if json_out:
        print(json.dumps(info))
        return
    fmt = lambda v: "(" + ", ".join(f"{x:.4f}" for x in v) + ")"  # noqa: E731
    classes = info["classes"]
    shown = ", ".join(classes[:20]) + (f", ... ({len(classes)} total)" if len(classes) > 20 else "")
    print(f"dataset     {info['name']}  ({spec})")
    print(f"train/test  {info['train_size']} / {info['test_size']} images")
    print(f"image size  {info['image_size']}x{info['image_size']} (3 channels, uint8)")
    print(f"classes     {info['num_classes']}: {shown}" if info["labelled"] else
          "classes     none (unlabelled: trains every method; evaluation takes --eval-data)")
    print(f"mean        {fmt(info['mean'])}")
    print(f"std         {fmt(info['std'])}")


@data_app.command("arrange-val")
def arrange_val_command(
    val_dir: str = typer.Argument(..., help="ImageNet's flat validation folder (ILSVRC2012_val_*.JPEG)"),
    labels: str = typer.Option(None, "--labels", help="ground truth: LOC_val_solution.csv, 'FILE WNID' lines, "
                               "or one WNID per line in sorted file order"),
    undo: bool = typer.Option(False, "--undo", help="move the images an earlier arrange-val arranged back"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Move the flat validation images into VAL_DIR/<wnid>/ folders, the layout folder: reads (--undo: back)."""
    if undo == bool(labels):
        raise UserError("arrange-val: expected --labels FILE (arrange) or --undo (move them back), not both")
    result = {"val_dir": val_dir, **(undo_arrange_val(val_dir) if undo else arrange_val(val_dir, labels))}
    if json_out:
        print(json.dumps(result))
    elif undo:
        print(f"moved {result['images']} images of {result['classes']} class folders back into {val_dir}")
    else:
        print(f"arranged {result['images']} images into {result['classes']} class folders of {val_dir}")
