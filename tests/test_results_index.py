"""Every file under results/ is named, with what wrote it, in the README beside it (or above it)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("results_index", ROOT / "benchmarks" / "results_index.py")
index = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(index)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs the git checkout")
def test_every_results_file_is_named_and_described_in_its_readme():
    blocks = index.sections()
    assert blocks, "no README.md under results/"
    for readme, block in blocks.items():
        assert "undescribed" not in block, f"{readme}: add a rule in benchmarks/results_index.py:\n{block}"
        assert block in readme.read_text(), f"{readme}: run python benchmarks/results_index.py"
    named = "\n".join(readme.read_text() for readme in blocks)
    for path in index.tracked():
        if path.name != "README.md" or path.parent.parent != ROOT / "results":
            assert f"`{path.name}" in named or path.name in named, path
