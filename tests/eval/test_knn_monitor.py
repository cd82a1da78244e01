"""The pretraining kNN monitor (monitor.knn_every) against a nearest-neighbour rule written here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from stream_helpers import jpeg_folder

from simxir.augment import build_augment
from simxir.data import LoaderConfig, load_dataset, open_dataset
from simxir.errors import UserError
from simxir.models import build_backbone
from simxir.protocol.monitor import knn_monitor
from simxir.train.config import MonitorConfig, TrainConfig


def _nearest_accuracy(train_f: np.ndarray, train_y: np.ndarray, test_f: np.ndarray, test_y: np.ndarray,
                      metric: str) -> float:
    """1-NN accuracy: cosine (largest normalized dot product) or euclidean (smallest distance)."""
    if metric == "cosine":
        a = train_f / np.linalg.norm(train_f, axis=1, keepdims=True)
        b = test_f / np.linalg.norm(test_f, axis=1, keepdims=True)
        nn_idx = (b @ a.T).argmax(axis=1)
    else:
        nn_idx = ((test_f[:, None, :] - train_f[None, :, :]) ** 2).sum(-1).argmin(axis=1)
    return float((train_y[nn_idx] == test_y).mean())


def _features(bb: torch.nn.Module, aug, x: torch.Tensor) -> np.ndarray:
    bb.eval()
    with torch.no_grad():
        return bb(aug.eval(x)).double().numpy()


def test_monitor_scores_its_epochs_as_one_nearest_neighbour_does():
    ds = load_dataset("digits")
    aug = build_augment("tiny", ds.image_size, ds.mean, ds.std)
    torch.manual_seed(0)
    bb = build_backbone("convnet-small")
    cfg = TrainConfig(epochs=5, monitor=MonitorConfig(knn_every=2, knn_k=1, knn_train_size=300, eval_size=200))
    evaluate = knn_monitor(cfg, ds, aug)
    assert evaluate(bb, 1) == {} and evaluate(bb, 3) == {}               # epochs 2, 4 and the last (5)
    got = evaluate(bb, 2)
    assert set(got) == {"knn_top1", "knn_euc_top1", "knn_weighted_top1"}
    idx = np.unique(np.linspace(0, len(ds.train) - 1, 300).round().astype(np.int64))   # evenly spaced
    tr = _features(bb, aug, ds.train.images[idx])
    te = _features(bb, aug, ds.test.images[:200])
    ytr, yte = ds.train.labels[idx].numpy(), ds.test.labels[:200].numpy()
    assert got["knn_top1"] == pytest.approx(_nearest_accuracy(tr, ytr, te, yte, "cosine"))
    assert got["knn_euc_top1"] == pytest.approx(_nearest_accuracy(tr, ytr, te, yte, "euclidean"))
    assert got["knn_weighted_top1"] == pytest.approx(got["knn_top1"])          # one neighbour: one vote
    assert 0.2 < got["knn_top1"] <= 1.0                                        # a random convnet beats 10%
    assert evaluate(bb, 5) == got                                              # same weights, same score


def test_streamed_folders_use_decoded_eval_images(tmp_path):
    root = jpeg_folder(tmp_path / "d", 16, 8, classes=2, w=48, h=40)
    ds = open_dataset(f"folder:{root}", 32, LoaderConfig(stream="on", workers=0, stats_sample=8))
    aug = build_augment("simsiam-cifar", 32, ds.mean, ds.std)
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=1, monitor=MonitorConfig(knn_every=1, knn_k=3, knn_train_size=0))
    got = knn_monitor(cfg, ds, aug)(build_backbone("convnet-small"), 1)
    assert got["knn_top1"] > 0.9            # the generated classes differ in colour


def test_off_by_default_and_bad_settings_are_one_line():
    ds = load_dataset("digits")
    aug = build_augment("tiny", ds.image_size, ds.mean, ds.std)
    assert knn_monitor(TrainConfig(), ds, aug) is None
    bad = TrainConfig(monitor=dataclasses.replace(MonitorConfig(), knn_every=1, knn_k=0))
    with pytest.raises(UserError, match="monitor.knn_k"):
        knn_monitor(bad, ds, aug)
