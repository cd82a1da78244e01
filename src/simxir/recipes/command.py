"""``simxir recipes``: the recipes shipped with simxir, one line each, usable by name."""

from __future__ import annotations

import json

import typer

from simxir.errors import UserError
from simxir.recipes import KINDS, list_recipes


def recipes_command(
    kind: str = typer.Argument(None, help=f"only this kind: {', '.join(KINDS)}"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """List the packaged recipes (pass a name to --recipe, e.g. --recipe bridging-s5/imagenet-bridge)."""
    if kind is not None and kind not in KINDS:
        raise UserError(f"KIND {kind!r}: expected one of {', '.join(KINDS)}")
    found = list_recipes(kind)
    if json_out:
        print(json.dumps({k: [{"name": n, "summary": s} for n, s in v] for k, v in found.items()}))
        return
    option = {"pretrain": "simxir pretrain --recipe", "finetune": "simxir finetune --recipe",
              "linear": "simxir eval --linear-protocol augmented --linear-recipe"}
    for k, entries in found.items():
        print(f"{k} ({option[k]} NAME):")
        width = max((len(n) for n, _ in entries), default=0)
        for name, summary in entries:
            print(f"  {name:<{width}}  {summary}")
