"""The YAML recipes shipped inside the package (one per paper experiment), found by name.

``find_recipe("bridging-s5/imagenet-bridge", "pretrain")`` is the packaged
``recipes/pretrain/bridging-s5/imagenet-bridge.yaml``; a path to an existing file is used as it is.
Kinds: ``pretrain`` (``simxir pretrain --recipe``), ``finetune`` (``simxir finetune --recipe``) and
``linear`` (``simxir eval --linear-recipe``)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from simxir.errors import UserError

KINDS = ("pretrain", "finetune", "linear")


def root() -> Path:
    return Path(str(files("simxir.recipes")))


def list_recipes(kind: str | None = None) -> dict[str, list[tuple[str, str]]]:
    """``{kind: [(name, first comment line), ...]}`` of the packaged recipes."""
    out: dict[str, list[tuple[str, str]]] = {}
    for k in (kind,) if kind else KINDS:
        folder = root() / k
        entries = []
        for path in sorted(folder.rglob("*.yaml")):
            first = next((line.lstrip("# ").strip() for line in path.read_text().splitlines()
                          if line.startswith("#") and line.lstrip("# ").strip()), "")
            entries.append((path.relative_to(folder).with_suffix("").as_posix(), first))
        out[k] = entries
    return out


def find_recipe(recipe: str | Path | None, kind: str, option: str = "--recipe") -> str | Path | None:
    """``recipe`` when it names an existing file, else the packaged recipe of that name (with or
    without ``.yaml``, with or without the ``KIND/`` prefix); a name that is neither is one line
    listing what there is."""
    if recipe is None or Path(recipe).is_file() or Path(recipe).is_dir():
        return recipe
    name = str(recipe).removesuffix(".yaml").removeprefix(f"{kind}/").removeprefix(f"recipes/{kind}/")
    path = root() / kind / f"{name}.yaml"
    if path.is_file():
        return path
    if any(ch in str(recipe) for ch in ("/", "\\")) and Path(recipe).suffix:   # meant as a path
        raise UserError(f"{option} {recipe}: no such file, and no packaged {kind} recipe of that name "
                        f"(simxir recipes lists them)")
    names = [n for n, _ in list_recipes(kind)[kind]]
    raise UserError(f"{option} {recipe}: no such file or packaged {kind} recipe; packaged: {', '.join(names)}")
