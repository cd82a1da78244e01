"""Every simxir command line in README.md and docs/ parses: the command exists and every option it
names is one of that command's options (paths and data may be placeholders), so a renamed option
breaks the suite, not the reader."""

from __future__ import annotations

import functools
import re
import shlex
from pathlib import Path

import pytest
import typer

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *sorted((REPO / "examples").glob("*.sbatch"))]


def _command_lines() -> list[tuple[str, str]]:
    """(file:line, command) for each simxir invocation in a fenced shell block (continuations joined)."""
    found = []
    for doc in DOCS:
        script = doc.suffix != ".md"          # a shell script: every line is a command line
        in_block, joined, start = script, "", 0
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            if not script and line.lstrip().startswith("```"):
                in_block = not in_block and line.strip() in ("```bash", "```sh", "```shell", "```console")
                continue
            if not in_block:
                continue
            text = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
            if not joined:
                start = n
            joined += " " + text.rstrip("\\").strip()
            if text.endswith("\\"):
                continue
            for part in re.split(r"&&|;|\|", joined):
                m = re.search(r"(?:^|\s)(?:\S*/)?simxir(?:\.cli)?\s+(.*)$", part.strip())
                if m and "pip install" not in part:
                    found.append((f"{doc.relative_to(REPO)}:{start}", m.group(1).strip()))
            joined = ""
    return found


@functools.cache
def _click_root():
    from simxir.cli import _register, app

    _register()
    return typer.main.get_command(app)


COMMANDS = _command_lines()


def test_the_docs_hold_command_lines():
    assert len(COMMANDS) >= 30, COMMANDS   # collected from the repository wherever pytest runs


@pytest.mark.parametrize("where,line", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_every_documented_command_parses(where, line):
    cmd = _click_root()
    words = shlex.split(line)
    i = 0
    while hasattr(cmd, "commands") and i < len(words) and not words[i].startswith("-"):
        assert words[i] in cmd.commands, f"{where}: no command {words[i]!r} in `simxir {line}`"
        cmd = cmd.commands[words[i]]
        i += 1
    assert not hasattr(cmd, "commands"), f"{where}: `simxir {line}` names a group, not a command"
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    for w in words[i:]:
        if w.startswith("--"):
            assert w.split("=", 1)[0] in options, f"{where}: `simxir {line}`: {w} is not an option of this command"


def test_option_help_lists_come_from_the_registries():
    from simxir.methods import PRETRAIN_METHODS
    from simxir.models import FORMATS

    def help_of(command: str, option: str) -> str:
        return next(p.help for p in _click_root().commands[command].params if option in p.opts)

    assert all(name in help_of("pretrain", "--method") for name in PRETRAIN_METHODS)
    assert all(name in help_of("finetune", "--encoder") for name in FORMATS)   # the ViT layouts too
