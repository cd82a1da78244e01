"""Shared test fixtures: the shared CIFAR-10 subset (skipped when ../shared is absent) and seeds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()

os.environ.setdefault("SIMXIR_QUIET", "1")

# Under pytest-xdist (-n N) each worker takes an equal share of the cores for torch's intra-op threads,
# and so do the processes the tests start (OMP_NUM_THREADS): two 1-thread tests at once on 2 cores,
# not two 2-thread ones, which oversubscribe the CPU (3-5x slower, docs/guide/pretrain.md).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 0)
if _WORKERS > 1:
    _THREADS = max(1, len(os.sched_getaffinity(0)) // _WORKERS)
    os.environ["OMP_NUM_THREADS"] = str(_THREADS)
    torch.set_num_threads(_THREADS)


def pytest_collection_modifyitems(config, items):
    """The slow tests first (each group in its collected order): under ``--dist worksteal`` the
    minute-long ones then start early and the run ends on short tests, not on one worker's last long
    test while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


class CliResult:
    """What ``simxir ARGV`` did in this process: exit ``code``, ``out`` (stdout), ``err`` lines,
    the ``error:`` line (or ""), and ``json`` (stdout parsed, when --json was given)."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err_lines = code, out, err.splitlines()
        self.error = next((line for line in self.err_lines if line.startswith("error: ")), "")

    @property
    def json(self):
        import json

        return json.loads(self.out)


@pytest.fixture
def cli(monkeypatch, capsys):
    """``cli(argv)``: run simxir.cli.main in-process with ``argv`` (the CLI contract as users get it:
    one error line, the exit code, the JSON object under --json), no subprocess."""
    import sys

    from simxir.cli import main

    def run(argv: list[str]) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["simxir", *map(str, argv)])
        with pytest.raises(SystemExit) as exc:
            main()
        got = capsys.readouterr()
        return CliResult(int(exc.value.code or 0), got.out, got.err)

    return run


@pytest.fixture
def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for torchrun's --master-port)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
