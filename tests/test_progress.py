"""Progress in a log file reads top to bottom: plain lines, no carriage-return redraws."""

from __future__ import annotations

import io
import sys

import pytest

from simxir import progress


@pytest.mark.parametrize("forced,want", [("", "lines"), ("bar", "bar"), ("off", "off")])
def test_mode_follows_the_terminal_and_the_variable(monkeypatch, forced, want):
    monkeypatch.setattr(sys, "stderr", io.StringIO())          # not a terminal
    monkeypatch.delenv("SIMXIR_QUIET", raising=False)
    monkeypatch.setenv("SIMXIR_PROGRESS", forced)
    assert progress.mode() == want
    monkeypatch.setenv("SIMXIR_QUIET", "1")
    assert progress.mode() == "off"


def test_lines_mode_writes_one_line_per_stage_and_none_per_epoch(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.delenv("SIMXIR_QUIET", raising=False)
    monkeypatch.delenv("SIMXIR_PROGRESS", raising=False)
    assert list(progress.progress(range(3), desc="train features")) == [0, 1, 2]
    assert list(progress.progress(range(4), desc="epoch 1/2")) == [0, 1, 2, 3]   # the engine logs epochs
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train features: done in ") and lines[0].endswith("(3 steps)")
    assert "\r" not in err.getvalue()
