"""``simxir methods``: the built-in SSL methods and their config fields with defaults."""

from __future__ import annotations

import json
from typing import Any

import typer

from simxir.config import to_dict


def methods_info() -> dict[str, Any]:
    """The ``simxir methods --json`` object: {"methods": {name: {"summary", "config"}}}."""
    import sys

    from simxir.methods import CONFIGS, METHODS

    out: dict[str, Any] = {}
    for name, cls in METHODS.items():
        module_doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        out[name] = {"summary": " ".join(module_doc.split()),
                     "config": to_dict(CONFIGS[name]()),
                     "train_defaults": cls.train_defaults}
    return {"methods": out}


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
