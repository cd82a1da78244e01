"""Evaluation under torch.distributed: sharded feature extraction, and simxir finetune under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from eval_helpers import extract_worker, features


def test_sharded_extraction_over_two_gloo_processes_equals_one_process(tmp_path):
    out = str(tmp_path / "f.pt")
    mp.spawn(extract_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    single_tr, single_te = features()
    for r in range(2):   # every process holds all rows, in the order of the split
        got = torch.load(out.replace(".pt", f".{r}.pt"), weights_only=True)
        assert got["train"].shape == single_tr.shape == (37, single_tr.shape[1])
        torch.testing.assert_close(got["train"], single_tr, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(got["test"], single_te, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_finetune_under_two_process_torchrun_writes_one_report_equal_to_single_process(tmp_path, free_port):
    from simxir.models import build_backbone, save_encoder

    torch.manual_seed(0)
    save_encoder(build_backbone("convnet-small"), tmp_path / "enc.safetensors")
    env = dict(os.environ, SIMXIR_QUIET="1", OMP_NUM_THREADS="1")
    args = ["finetune", "--encoder", str(tmp_path / "enc.safetensors"), "--data", "digits", "--json",
            "--linear-epochs", "5", "epochs=1", "batch_size=128", "augment=tiny", "tensorboard=false",
            "threads=1"]
    single = subprocess.run([sys.executable, "-m", "simxir.cli", *args, "--out", str(tmp_path / "one")],
                            env=env, capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                          "--master-port", str(free_port), "-m", "simxir.cli", *args,
                          "--out", str(tmp_path / "two")],
                         env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    outs = [json.loads(line) for line in two.stdout.splitlines() if line.startswith("{")]
    assert len(outs) == 1                                  # rank 0 alone prints
    a, b = json.loads(single.stdout), outs[0]
    assert a["before"] == b["before"]                      # same encoder, features gathered in order
    # after: every process draws the global batch's augmentation and keeps its rows, so the 2-process
    # DDP + SyncBatchNorm training sees the single process's views and ends in the same encoder
    assert a["after"]["knn"] == b["after"]["knn"]
    assert abs(a["after"]["linear"]["top1"] - b["after"]["linear"]["top1"]) < 0.2
    reports = list((tmp_path / "two").rglob("report.md"))
    assert len(reports) == 1 and (tmp_path / "two" / "after.json").is_file()
    assert json.loads((tmp_path / "two" / "before.json").read_text()) == b["before"]


def test_processes_that_choose_different_storage_still_gather_one_dtype(tmp_path):
    from eval_helpers import mixed_dtype_worker

    out = str(tmp_path / "f.pt")
    mp.spawn(mixed_dtype_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    single_tr, _ = features()
    for r in range(2):
        got = torch.load(out.replace(".pt", f".{r}.pt"), weights_only=True)
        assert got["train"].dtype == torch.float16, r          # the smaller storage, agreed by all
        torch.testing.assert_close(got["train"].float(), single_tr, rtol=2e-3, atol=2e-3)


def test_features_for_rank_0_alone_are_held_by_rank_0_alone(tmp_path):
    from eval_helpers import main_only_worker

    out = str(tmp_path / "f.pt")
    mp.spawn(main_only_worker, args=(2, str(tmp_path / "init"), out), nprocs=2, join=True)
    single_tr, single_te = features()
    zero = torch.load(out.replace(".pt", ".0.pt"), weights_only=True)
    one = torch.load(out.replace(".pt", ".1.pt"), weights_only=True)
    torch.testing.assert_close(zero["train"], single_tr, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(zero["test"], single_te, rtol=1e-5, atol=1e-6)
    assert one["train"].shape == (0, single_tr.shape[1]) and one["test"].shape[0] == 0
