"""The package's dependency direction (docs/architecture.md), checked on every import statement in
``src/simxir`` (those inside functions too), parsed with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "simxir"

# lowest first; a module may import its own package and the layers below its own
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "__init__"),
    ("config", "io", "device", "distributed", "progress", "sizes", "recipes", "schedules"),
    ("plotting", "rundir"),
    ("methods", "models", "augment", "data", "decorrelation"),
    ("train", "eval"),
    ("protocol",),
    ("finetune", "analysis", "dynamics"),
    ("experiments",),
    ("commands",),      # every <package>/command.py
    ("cli",),
)
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str:
    """The architectural unit of a module: ``commands`` for a command.py, else its top package."""
    parts = module.split(".")
    if parts[-1] == "command":
        return "commands"
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, source: str | None = None) -> list[tuple[str, int]]:
    """``(imported simxir module, line)`` for every import in the file (or in ``source``, read as if
    it were that file); ``from simxir.x import y`` counts as importing ``simxir.x.y`` when that is a
    module, else ``simxir.x``."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("simxir")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("simxir"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                is_module = (SRC.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                    (SRC.parent / Path(*sub.split("."))).is_dir()
                found.append((sub if is_module else target, node.lineno))
    return found


FILES = sorted(SRC.rglob("*.py"))
EDGES = [(path, _module_name(path), target, line) for path in FILES for target, line in _imports(path)]


def test_every_unit_has_a_layer():
    units = {_unit(_module_name(p)) for p in FILES}
    assert units <= set(LAYER_OF), f"modules outside the layer table: {units - set(LAYER_OF)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    """Each import goes to a lower layer, or stays inside the module's own package (but a package's
    library never imports its own command.py)."""
    bad = []
    for _, source, target, line in (e for e in EDGES if e[0] == path):
        su, tu = _unit(source), _unit(target)
        same_package = source.split(".")[:2] == target.split(".")[:2] and tu != "commands"
        if not (same_package or LAYER_OF[tu] < LAYER_OF[su]):
            bad.append(f"line {line}: {source} ({su}) imports {target} ({tu})")
    assert not bad, "\n".join(bad)


def test_no_command_module_is_imported_by_library_code():
    bad = [f"{s} imports {t} (line {ln})" for _, s, t, ln in EDGES
           if _unit(t) == "commands" and _unit(s) != "cli"]
    assert not bad, "\n".join(bad)


def test_no_package_level_cycle():
    graph: dict[str, set[str]] = {}
    for _, s, t, _ in EDGES:
        # every <package>/command.py is the commands layer, not its package (see LAYERS)
        a = ["commands"] if s.endswith(".command") else s.split(".")[1:2] or ["simxir"]
        b = ["commands"] if t.endswith(".command") else t.split(".")[1:2] or ["simxir"]
        if a != b:
            graph.setdefault(a[0], set()).add(b[0])

    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(p for p in graph if p in reach(p) and p not in ("cli",))
    assert not cycles, f"packages on an import cycle: {cycles}"


def test_the_check_sees_a_violation(tmp_path):
    """The parser finds imports inside functions and resolves relative ones."""
    source = "def f():\n    from simxir.analysis import runs\n    from ..eval import knn\n"
    got = [t for t, _ in _imports(SRC / "train" / "_probe_architecture.py", source)]   # nothing is written
    assert got == ["simxir.analysis.runs", "simxir.eval.knn"]
    assert LAYER_OF[_unit("simxir.analysis.runs")] > LAYER_OF[_unit("simxir.train.engine")]
