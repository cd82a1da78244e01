"""Multi-crop runs through the engine: resuming after a kill reproduces the uninterrupted run's
losses, and a method that takes no local crops, or a DINO warm-up longer than the run, is refused
before training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from train_toys import Killed, kill_after

from simxir.augment import build_augment
from simxir.data import load_dataset
from simxir.errors import UserError
from simxir.methods import build_method
from simxir.models import build_backbone
from simxir.train import train
from simxir.train.assemble import build_config

OVER = ["epochs=2", "batch_size=256", "tensorboard=false", "monitor.eval_size=64", "precision=fp32",
        "checkpoint_interval_s=0", "log_every=1", "multicrop.local_crops=2", "multicrop.local_size=8"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _run(digits, name, method_cfg, out, **kw):  # noqa: ANN001, ANN202
    cfg = build_config(name, None, OVER + [f"method.{k}={v}" for k, v in method_cfg.items()])
    aug = build_augment("auto", digits.image_size, digits.mean, digits.std, multicrop=cfg.multicrop)
    torch.manual_seed(0)
    method = build_method(name, build_backbone("convnet-small"), cfg.method)
    return train(cfg, method, digits, aug, out, **kw)


@pytest.mark.parametrize("name,method_cfg", [
    ("simsiam", {"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 16}),
    ("dino", {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16})])
def test_resume_reproduces_the_uninterrupted_multicrop_run(tmp_path, digits, name, method_cfg):
    full = _run(digits, name, method_cfg, tmp_path / "full")
    with pytest.raises(Killed):
        _run(digits, name, method_cfg, tmp_path / "cut", callbacks=[kill_after(1)])
    resumed = _run(digits, name, method_cfg, tmp_path / "cut", resume=True)
    a, b = [r["loss"] for r in full["steps"]], [r["loss"] for r in resumed["steps"]]
    assert len(a) == len(b) == 2 * 5              # 1437 digits, batch 256: 5 steps an epoch
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-7)


def test_a_method_without_local_crops_refuses_them_before_training(tmp_path, digits):
    with pytest.raises(UserError, match="moco takes no local crops"):
        _run(digits, "moco", {"queue_size": 64}, tmp_path / "moco")
    assert not (tmp_path / "moco" / "checkpoint.pt").exists()


def test_a_teacher_temperature_warm_up_longer_than_the_run_is_refused_before_training(tmp_path, digits):
    with pytest.raises(UserError, match="warmup_teacher_temp_epochs: 3 warm-up epochs exceed the run's 2 epochs"):
        _run(digits, "dino", {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16,
                              "warmup_teacher_temp_epochs": 3}, tmp_path / "dino")
    assert not (tmp_path / "dino" / "checkpoint.pt").exists()
