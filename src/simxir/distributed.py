"""torch.distributed helpers: initialisation under torchrun, rank queries and gathers."""

from __future__ import annotations

import atexit
import datetime
import os

import torch
import torch.distributed as dist

# Collectives fail after this long (NCCL's watchdog, gloo's timeout); SIMXIR_DIST_TIMEOUT_S sets it.
DEFAULT_TIMEOUT_S = 1800
# How long the other ranks wait, off the collective backend, while rank 0 evaluates or saves alone
# (kNN over a large train set, a 100-epoch probe): SIMXIR_WAIT_TIMEOUT_S.
DEFAULT_WAIT_S = 4 * 3600


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def _seconds(name: str, default: int) -> datetime.timedelta:
    value = os.environ.get(name, "")
    try:
        seconds = float(value) if value else default
    except ValueError:
        seconds = default
    return datetime.timedelta(seconds=seconds if seconds > 0 else default)


def init_from_env() -> torch.device:
    """Initialise the process group when launched by ``torchrun`` (WORLD_SIZE > 1).

    Uses nccl on CUDA (the process's GPU set first and passed as ``device_id``) and gloo on CPU,
    with an explicit timeout (``SIMXIR_DIST_TIMEOUT_S``, default 30 min); the group is destroyed
    when the process exits. Returns the device this process should use.
    """
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank % torch.cuda.device_count()) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if ws > 1 and not is_distributed():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=_seconds("SIMXIR_DIST_TIMEOUT_S", DEFAULT_TIMEOUT_S),
                                device_id=device if use_cuda else None)
        atexit.register(shutdown)
    return device


def shutdown() -> None:
    """Destroy the process group if one is up."""
    if is_distributed():
        dist.destroy_process_group()


def wait_for_main() -> None:
    """Every rank meets here, the others waiting for rank 0 to finish work it does alone
    (evaluation, checkpoints, reports), in a barrier of a CPU (gloo) group whose timeout is
    ``SIMXIR_WAIT_TIMEOUT_S`` (default 4 h): no NCCL collective is pending meanwhile, so NCCL's
    watchdog cannot kill the job, and the collective that follows starts with every rank there. The
    group lives for this one barrier (a few milliseconds to build), so none outlives a caller's
    ``destroy_process_group``."""
    if world_size() <= 1:
        return
    group = dist.new_group(backend="gloo", timeout=_seconds("SIMXIR_WAIT_TIMEOUT_S", DEFAULT_WAIT_S))
    try:
        dist.barrier(group=group)
    finally:
        dist.destroy_process_group(group)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each process the gradient of its own slice.

    The backward all-reduces (sums) the incoming gradients first, because every process computes
    the loss over the whole gathered batch (as solo-learn's and lightly's GatherLayer do).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x.contiguous())
        return torch.cat(out, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // dist.get_world_size()
        r = dist.get_rank()
        return grad[r * n:(r + 1) * n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all processes along dim 0, keeping gradients; identity when alone."""
    if not is_distributed() or world_size() == 1:
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from all processes along dim 0 (no gradient); identity when alone."""
    if not is_distributed() or world_size() == 1:
        return x
    out = [torch.zeros_like(x) for _ in range(world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out, dim=0)


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Average a tensor over processes (a copy); identity when alone."""
    if not is_distributed() or world_size() == 1:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / world_size()
