"""Two gloo processes with SyncBatchNorm take the same step as one process on the global batch."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from train_toys import DDP_CASES, LOCAL_CROPS, USER_CASES, ddp_worker, nan_worker, one_engine_step

# float32, different reduction orders (SyncBN all-reduce, DDP gradient averaging, gathers):
RTOL, ATOL = 1e-4, 1e-4  # 5e-5 seen on conv biases on some CPUs; a wrong average is ~0.1


@pytest.mark.slow
def test_ddp_step_equals_single_process_step(tmp_path):
    from simxir.methods import METHODS

    names = [n for n in DDP_CASES if n in ("toy", *USER_CASES, *LOCAL_CROPS) or n in METHODS]
    assert names == list(DDP_CASES), f"not registered methods: {sorted(set(DDP_CASES) - set(names))}"
    out = tmp_path / "ddp.pt"
    mp.spawn(ddp_worker, args=(2, str(tmp_path / "init"), names, str(out)), nprocs=2, join=True)
    ddp = torch.load(out, weights_only=True)
    for name in names:
        single = one_engine_step(name, False)
        assert set(single) == set(ddp[name]), name
        moved = 0
        for k, v in single.items():
            torch.testing.assert_close(ddp[name][k], v, rtol=RTOL, atol=ATOL, msg=f"{name}: {k}")
        # the step did something: parameters moved away from their initial values
        torch.manual_seed(0)
        from train_toys import build_case
        init = build_case(name, False)[0].state_dict()
        for k, v in init.items():
            if v.is_floating_point() and not torch.equal(v, single["method." + k]):
                moved += 1
        assert moved > 0, name


@pytest.mark.slow
def test_every_rank_names_the_epoch_rank_0s_checkpoint_holds(tmp_path):
    out = tmp_path / "msg"
    mp.spawn(nan_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run"), str(out)), nprocs=2, join=True)
    for rank in (0, 1):
        msg = (tmp_path / f"msg.{rank}").read_text()
        assert "epoch 3, step 1" in msg and "(after epoch 1)" in msg, (rank, msg)


@pytest.mark.slow
def test_a_slow_evaluation_on_rank_0_does_not_time_out_the_others(tmp_path):
    """Rank 0 evaluates alone for longer than the collectives' timeout; the other rank waits off the
    collective backend (distributed.wait_for_main), so the run completes."""
    from train_toys import slow_eval_worker

    out = tmp_path / "msg"
    mp.spawn(slow_eval_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run"), str(out), 3.0, 6.0),
             nprocs=2, join=True)
    for rank in (0, 1):
        assert (tmp_path / f"msg.{rank}").read_text() == "done", rank


@pytest.mark.slow
def test_epoch_metrics_are_the_runs_not_rank_0s(tmp_path):
    """A value each process logs differently (its rank) is reported as the mean over processes, the
    same on every rank."""
    import json

    from train_toys import metrics_worker

    out = tmp_path / "m"
    mp.spawn(metrics_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "run"), str(out)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"m.{r}").read_text()) for r in (0, 1)]
    assert got[0]["rank_tag"] == got[1]["rank_tag"] == 0.5
    assert got[0]["loss"] == got[1]["loss"]
