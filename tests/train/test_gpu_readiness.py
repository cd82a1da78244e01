"""CUDA / NCCL settings the CPU can check: loader workers from the real core count, TF32 only on
CUDA and not under precision fp32 (and recorded in checkpoints), explicit distributed timeouts."""

from __future__ import annotations

import datetime

import pytest
import torch

from simxir import distributed
from simxir.data.stream import MAX_WORKERS, default_workers
from simxir.train.plan import set_tf32, use_tf32


@pytest.mark.parametrize("cpus,local,want", [(2, 1, 1), (16, 1, 15), (16, 8, 1), (64, 2, 31), (256, 1, MAX_WORKERS),
                                             (1, 1, 1)])
def test_loader_workers_come_from_this_process_share_of_the_cores(monkeypatch, cpus, local, want):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local))
    assert default_workers() == want


def test_tf32_on_cuda_unless_precision_fp32():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert use_tf32("auto", cuda) and use_tf32("bf16", cuda) and not use_tf32("fp32", cuda)
    assert not use_tf32("auto", cpu)
    was = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        set_tf32(False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = was


def test_the_checkpoint_records_tf32():
    from simxir.train import TrainConfig
    from simxir.train.plan import plan_run
    from simxir.train.precision import precision_record

    plan = plan_run(TrainConfig(epochs=1, batch_size=8, device="cpu"), 64, torch.device("cpu"))
    assert plan.tf32 is False and precision_record(plan)["tf32"] is False


@pytest.mark.parametrize("value,want", [("", 1800), ("90", 90), ("abc", 1800), ("-5", 1800), ("0.5", 0.5)])
def test_distributed_timeouts_from_the_environment(monkeypatch, value, want):
    monkeypatch.setenv("SIMXIR_DIST_TIMEOUT_S", value)
    assert distributed._seconds("SIMXIR_DIST_TIMEOUT_S", 1800) == datetime.timedelta(seconds=want)


def test_waiting_for_rank_0_is_a_no_op_alone():
    distributed.wait_for_main()   # no process group: returns at once
