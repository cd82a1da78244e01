"""Shared test fixtures: the shared CIFAR-10 subset (skipped when ../shared is absent) and seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

os.environ.setdefault("SIMXIR_QUIET", "1")


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture
def cifar1k() -> Path:
    """Path of ../shared/data/cifar10-1k.npz; skips the test when the shared data is absent."""
    path = SHARED_DATA / "cifar10-1k.npz"
    if not path.is_file():
        pytest.skip(f"needs the shared CIFAR-10 subset at {path} (../shared/data beside the repo)")
    return path
