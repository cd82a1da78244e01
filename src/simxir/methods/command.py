"""``simxir methods``: the built-in SSL methods and their config fields with defaults."""

from __future__ import annotations

import json

import typer

from simxir.methods import methods_info


def methods_command(
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """List the SSL methods (for --method / method_name) and their config defaults (method.KEY=V)."""
    info = methods_info()
    if json_out:
        print(json.dumps(info))
        return
    for name, entry in info["methods"].items():
        print(f"{name}: {entry['summary']}")
        for key, value in entry["config"].items():
            print(f"    method.{key}={json.dumps(value)}")
        for section, values in entry["train_defaults"].items():   # beneath any recipe
            for key, value in values.items():
                print(f"    {section}.{key}={json.dumps(value)}  (method default)")
