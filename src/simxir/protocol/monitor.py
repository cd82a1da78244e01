"""A kNN monitor for pretraining runs (solo-learn's ``knn_eval`` callback): every ``monitor.knn_every``
epochs, the backbone's features of a fixed sample of un-augmented train images classify the
monitor's test images by their ``monitor.knn_k`` nearest neighbours (majority vote, cosine and
euclidean; and the weighted cosine vote, T = 0.07). Epoch metrics ``knn_top1``, ``knn_euc_top1`` and
``knn_weighted_top1`` are fractions in [0, 1], as the online probe's are.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from simxir.data.stream import decode_eval, loader_workers, sample_indices
from simxir.errors import UserError
from simxir.eval.features import extract_features
from simxir.eval.knn import knn_classify
from simxir.train.config import TrainConfig
from simxir.train.engine import Evaluator


def knn_bank(dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` train images evenly spaced over the train split (all when ``size`` is 0), as uint8
    images at the eval size and their labels; streamed folders are decoded once (eval transform)."""
    n = len(dataset.train)
    idx = sample_indices(n, size if size > 0 else n)
    if getattr(dataset, "streamed", False):
        return decode_eval(dataset.train, dataset.image_size, idx, workers=loader_workers(dataset.loader),
                           skip=dataset.loader.skip_unreadable, desc="kNN monitor bank")
    images, labels = dataset.train.images, dataset.train.labels
    t = torch.from_numpy(idx)
    return images[t.to(images.device)], labels[t.to(labels.device)]


def knn_monitor(cfg: TrainConfig, dataset: Any, augment: Any,
                test: tuple[torch.Tensor, torch.Tensor] | None = None) -> Evaluator | None:
    """The engine's ``evaluator`` for ``cfg.monitor.knn_every`` (None when it is 0 or ``dataset`` is
    unlabelled); ``dataset`` is the training data or the run's ``eval_data``. ``test``: the query
    images and labels (default: the first
    ``monitor.eval_size`` test images, the other monitors' set); the bank is built on first use."""
    mon = cfg.monitor
    if mon.knn_every < 0 or mon.knn_k < 1 or mon.knn_train_size < 0:
        raise UserError(f"monitor.knn_every={mon.knn_every}, monitor.knn_k={mon.knn_k}, monitor.knn_train_size="
                        f"{mon.knn_train_size}: expected knn_every >= 0 (0: off), knn_k >= 1, knn_train_size >= 0")
    if mon.knn_every == 0 or not getattr(dataset, "labelled", True):
        return None
    state: dict[str, Any] = {}

    def evaluate(backbone: nn.Module, epoch: int) -> dict[str, Any]:
        if epoch % mon.knn_every and epoch != cfg.epochs:
            return {}
        if "bank" not in state:
            state["bank"] = knn_bank(dataset, mon.knn_train_size)
            state["test"] = test if test is not None else _monitor_test(dataset, mon.eval_size)
        (bx, by), (tx, ty) = state["bank"], state["test"]
        if ty.numel() == 0:
            return {}
        kw = {"transform": augment, "batch_size": mon.eval_batch_size, "desc": "kNN monitor"}
        train_f = extract_features(backbone, bx, **kw)
        test_f = extract_features(backbone, tx, **kw)
        res = knn_classify(train_f, by, test_f, ty, ks=(mon.knn_k,), show_progress=False)
        k = str(mon.knn_k)
        return {"knn_top1": res["knn"]["cosine"][k] / 100, "knn_euc_top1": res["knn"]["euclidean"][k] / 100,
                "knn_weighted_top1": res["knn_weighted"]["cosine"][k] / 100}

    return evaluate


def _monitor_test(dataset: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    n = len(dataset.test)
    idx = sample_indices(n, size) if getattr(dataset, "streamed", False) else None
    if idx is not None:
        return decode_eval(dataset.test, dataset.image_size, idx, workers=loader_workers(dataset.loader),
                           skip=dataset.loader.skip_unreadable, desc="kNN monitor queries")
    return dataset.test.images[:size], dataset.test.labels[:size]
