"""Two torchrun "nodes" on this machine (--nnodes 2, one process each, a localhost rendezvous) train
the same run as one process: the same encoder, up to float reduction order."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

# 64 images at batch 64: every epoch is one optimizer step, so the comparison is step by step, as the
# spawned DDP test's (float32 reduction orders differ; a wrong average or slice is off by ~0.1)
COMMON = ["pretrain", "--method", "simsiam", "epochs=3", "batch_size=64", "tensorboard=false", "precision=fp32",
          "channels_last=false", "threads=1", "monitor.eval_size=16", "method.proj_hidden=32", "method.proj_dim=16",
          "method.pred_hidden=32"]
RTOL, ATOL = 1e-4, 1e-4


@pytest.mark.slow
def test_two_nodes_train_what_one_process_trains(tmp_path, free_port):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8),
             y_train=np.arange(64) % 4, x_test=rng.integers(0, 256, (16, 16, 16, 3), dtype=np.uint8),
             y_test=np.arange(16) % 4)
    data = ["--data", f"npz:{tmp_path / 'd.npz'}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SIMXIR_PROGRESS": "lines"}
    env.pop("SIMXIR_QUIET", None)
    port = free_port
    start = time.time()
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
                               "--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", str(port),
                               "-m", "simxir.cli", *COMMON, *data, "--out", str(tmp_path / "two-nodes")],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    outs = [n.communicate(timeout=600) for n in nodes]
    assert all(n.returncode == 0 for n in nodes), [o[1][-2000:] for o in outs]
    assert "batch 64 (2 proc x 1 accum x 32)" in outs[0][1]               # really one process per node
    two_nodes_s = time.time() - start
    one = subprocess.run([sys.executable, "-m", "simxir.cli", *COMMON, *data, "--out", str(tmp_path / "one")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    a = load_file(tmp_path / "two-nodes" / "encoder.safetensors")
    b = load_file(tmp_path / "one" / "encoder.safetensors")
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=RTOL, atol=ATOL, msg=lambda m, k=k: f"{k}: {m}")
    assert int(a["features.1.num_batches_tracked"]) == 6            # 3 steps x 2 views: it trained
    print(f"two torchrun nodes: {two_nodes_s:.1f} s", file=sys.stderr)
