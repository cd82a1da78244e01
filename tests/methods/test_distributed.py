"""Under DDP (2 CPU processes, gloo), methods whose statistics span the global batch give the
same gradients as one process on the whole batch."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from simxir.methods import build_method

CASES = ("barlow_twins", "vicreg", "simclr")
N, D_IN, D_FEAT, D_PROJ = 8, 5, 6, 4


class VecBackbone(nn.Module):
    """A linear 'backbone' on vectors (no BatchNorm, so no per-process statistics)."""

    def __init__(self) -> None:
        super().__init__()
        self.feature_dim = D_FEAT
        self.lin = nn.Linear(D_IN, D_FEAT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    m = build_method(name, VecBackbone())
    m.projector = nn.Linear(D_FEAT, D_PROJ)  # BN-free head: gathers are the only coupling
    return m


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(N, D_IN, generator=g), torch.randn(N, D_IN, generator=g)


def _grads(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in m.named_parameters() if p.grad is not None}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    os.environ.pop("RANK", None)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        x1, x2 = _data()
        shard = slice(rank * N // world, (rank + 1) * N // world)
        results = {}
        for name in CASES:
            model = nn.parallel.DistributedDataParallel(_model(name))
            out = model([x1[shard], x2[shard]])
            out["loss"].backward()
            results[name] = (out["loss"].detach(), _grads(model.module))
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_gradients_match_single_process_full_batch() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init_file = str(Path(tmp) / "init")
        mp.spawn(_worker, args=(2, init_file, tmp), nprocs=2, join=True)
        per_rank = [torch.load(Path(tmp) / f"rank{r}.pt", weights_only=True) for r in range(2)]
    x1, x2 = _data()
    for name in CASES:
        m = _model(name)
        out = m([x1, x2])
        out["loss"].backward()
        ref = _grads(m)
        for r in range(2):
            loss_r, grads_r = per_rank[r][name]
            if name != "simclr":  # every process computes the same global loss
                torch.testing.assert_close(loss_r, out["loss"].detach(), rtol=1e-5, atol=1e-6)
            assert set(grads_r) == set(ref)
            for k in ref:
                torch.testing.assert_close(grads_r[k], ref[k], rtol=1e-4, atol=1e-6,
                                           msg=f"{name} {k} rank {r}")
        if name == "simclr":  # the local losses average to the full-batch loss
            mean = (per_rank[0][name][0] + per_rank[1][name][0]) / 2
            torch.testing.assert_close(mean, out["loss"].detach(), rtol=1e-5, atol=1e-6)
