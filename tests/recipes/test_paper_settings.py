"""Every recipe against docs/paper-settings.md, the single source of the papers' settings: each row's
recipe key holds the row's recipe value, the value follows from the paper's by the row's convention,
and every paper recipe is in the table."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import yaml

from simxir.config import read_recipe
from simxir.experiments.ablation import ROWS_BY_NAME
from simxir.recipes import list_recipes, root

DOC = Path(__file__).resolve().parents[2] / "docs" / "paper-settings.md"
START, END = "<!-- settings table", "<!-- end of settings table -->"
COLUMNS = ["paper", "where", "setting", "paper value", "recipe", "key", "recipe value", "convention"]
# the recipes that claim a paper's setting (finetune/simxir-dino-vits16-imagenet is simxir's own: the
# SimXIR paper has no ViT experiment)
COVERED = ("pretrain/bridging-s5/*", "pretrain/simxir-c2/*", "pretrain/dino/*", "finetune/simxir-cifar",
           "finetune/simxir-imagenet", "linear/bridge*")


def rows() -> list[dict[str, str]]:
    text = DOC.read_text()
    body = text[text.index(START):text.index(END)].splitlines()[1:]
    header = [c.strip() for c in body[0].strip("|").split("|")]
    assert header == COLUMNS
    out = []
    for line in body[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == len(COLUMNS), line
        out.append(dict(zip(COLUMNS, cells)))
    return out


def recipe_files(pattern: str) -> list[Path]:
    """The pretrain / finetune / linear recipes a row's ``recipe`` cell names (a glob allowed)."""
    found = []
    for kind in ("pretrain", "finetune", "linear"):
        for path in sorted((root() / kind).rglob("*.yaml")):
            name = path.relative_to(root() / kind).with_suffix("").as_posix()
            if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(f"{kind}/{name}", pattern):
                found.append(path)
    return found


def lookup(data: dict, dotted: str):  # noqa: ANN201
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return KeyError(dotted)
        node = node[part]
    return node


def switches(name: str) -> str:
    r = ROWS_BY_NAME[name]
    on = {True: "on", False: "off"}
    return (f"c_inv={r.c_inv:g} c_cov={r.c_cov:g} std={on[r.standardize]} i-pred={on[r.identity_predictor]} "
            f"stopgrad={on[r.stop_gradient]}")


def recipe_values(row: dict[str, str]) -> list[tuple[str, object]]:
    """(where, value) of the row's key in every recipe it names; several keys give a list."""
    if row["recipe"].startswith("ablation:"):
        return [(row["recipe"], switches(row["recipe"].split(":", 1)[1]))]
    files = recipe_files(row["recipe"])
    assert files, f"{row['recipe']}: no recipe by that name"
    keys = [k.strip() for k in row["key"].split(",")]
    out = []
    for f in files:
        data = read_recipe(f, "recipe")
        values = [lookup(data, k) for k in keys]
        out.append((f.name, values[0] if len(keys) == 1 else values))
    return out


def parse(cell: str):  # noqa: ANN201
    return yaml.safe_load(cell)


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['recipe']}:{r['key']}:{r['where'][:20]}")
def test_recipe_holds_the_tables_value(row):
    want = parse(row["recipe value"])
    for where, got in recipe_values(row):
        assert not isinstance(got, KeyError), f"{where}: has no {row['key']} (the table says {want})"
        assert got == want, f"{where}: {row['key']} is {got}, docs/paper-settings.md says {want}"


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['recipe']}:{r['key']}:{r['where'][:20]}")
def test_recipe_value_follows_from_the_papers_by_the_convention(row):
    conv, paper, recipe = row["convention"], row["paper value"], row["recipe value"]
    if conv == "=":
        assert parse(paper) == parse(recipe)
    elif conv == "x8 processes":
        assert parse(paper) == 8 * parse(recipe)
    else:
        assert conv == "code" and ":" in paper, (f"convention {conv!r}: expected =, x8 processes or code "
                                                 f"(with its source in the paper value)")


def test_every_paper_recipe_is_in_the_table():
    named = {f for row in rows() if not row["recipe"].startswith("ablation:") for f in recipe_files(row["recipe"])}
    listed = [root() / kind / f"{name}.yaml" for kind, entries in list_recipes().items()
              for name, _ in entries if any(fnmatch.fnmatch(f"{kind}/{name}", p) for p in COVERED)]
    assert listed, "no paper recipes found"
    missing = [p.relative_to(root()).as_posix() for p in listed if p not in named]
    assert not missing, f"recipes not in docs/paper-settings.md: {missing}"


def test_ablation_rows_of_table_3_are_all_mapped():
    mapped = {row["recipe"].split(":", 1)[1] for row in rows() if row["recipe"].startswith("ablation:")}
    paper_rows = {name for name, r in ROWS_BY_NAME.items() if r.paper}
    assert mapped == paper_rows
