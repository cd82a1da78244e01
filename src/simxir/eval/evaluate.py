"""One call from an encoder (or features) to the ``simxir eval --json`` result object."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from simxir.errors import UserError
from simxir.eval.features import dataset_features, model_device
from simxir.eval.knn import DEFAULT_KS, METRICS, knn_classify
from simxir.eval.linear import LinearProbeConfig, linear_probe
from simxir.eval.paired import add_outcomes


def check_features(train_f: torch.Tensor, test_f: torch.Tensor) -> None:
    """Both splits non-empty with at least one dimension, every value finite (an encoder with NaN
    weights, or features that overflowed float32)."""
    for name, f in (("train", train_f), ("test", test_f)):
        if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
            raise UserError(f"{name} features: expected a non-empty (N, d) matrix, got shape {tuple(f.shape)} "
                            f"(an empty split cannot be scored)")
        bad = int((~torch.isfinite(f)).any(dim=1).sum())
        if bad:
            raise UserError(f"{name} features: {bad} of {f.shape[0]} rows hold NaN or inf (the encoder's output "
                            f"is not finite, or the values overflow float32)")


def evaluate_features(
    train_f: torch.Tensor,
    train_y: torch.Tensor,
    test_f: torch.Tensor,
    test_y: torch.Tensor,
    knn_ks: Sequence[int] = DEFAULT_KS,
    linear: bool = True,
    linear_cfg: LinearProbeConfig | None = None,
    metrics: Sequence[str] = METRICS,
    weighted_temperature: float | None = 0.07,
    chunk_size: int | None = None,
    backend: str = "torch",
    device: torch.device | str | None = None,
    show_progress: bool = True,
    outcomes: bool = False,
) -> dict[str, Any]:
    """``{"knn": ..., "knn_weighted": ..., "linear": {"top1", "top5"}}`` from frozen features.

    ``knn_ks`` empty skips kNN; ``linear=False`` leaves out the "linear" key. Empty splits and
    non-finite features are refused (a UserError), never scored as 0 or chance. ``outcomes``: also
    every test image's outcome per cell (``right``, ``n_test``, ``labels``: :func:`add_outcomes`),
    so two evaluations can be compared image by image.
    """
    check_features(train_f, test_f)
    if weighted_temperature is not None and not (math.isfinite(weighted_temperature) and weighted_temperature > 0):
        raise UserError(f"--temperature: expected a finite number > 0, got {weighted_temperature}")
    if device is not None:
        dev = torch.device(device)
        train_f, train_y, test_f, test_y = (t.to(dev) for t in (train_f, train_y, test_f, test_y))
    result: dict[str, Any] = {}
    if knn_ks:
        result.update(knn_classify(train_f, train_y, test_f, test_y, ks=knn_ks, metrics=metrics,
                                   weighted_temperature=weighted_temperature, chunk_size=chunk_size,
                                   backend=backend, show_progress=show_progress, outcomes=outcomes))
    if linear:
        result["linear"] = linear_probe(train_f, train_y, test_f, test_y, linear_cfg,
                                        show_progress=show_progress, outcomes=outcomes)
    if outcomes:
        add_outcomes(result, result.pop("right", None), result.get("linear", {}).pop("right", None),
                     test_y.cpu().numpy())
    return result


def evaluate_encoder(
    model: nn.Module,
    dataset: Any,
    augment_or_transform: object | None = None,
    knn_ks: Sequence[int] = DEFAULT_KS,
    linear: bool = True,
    linear_cfg: LinearProbeConfig | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    weighted_temperature: float | None = 0.07,
    chunk_size: int | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """Extract frozen features of ``dataset.train`` / ``dataset.test`` (an ``ImageDataset`` or a
    streamed folder) with the deterministic transform (``Augment.eval`` or a callable), then kNN and
    optionally the linear probe.

    ``device`` defaults to the model's device; kNN and the probe run there too.
    """
    tr, train_y, te, test_y = dataset_features(model, dataset, augment_or_transform, batch_size, device)
    dev = device if device is not None else model_device(model)
    return evaluate_features(tr, train_y, te, test_y, knn_ks=knn_ks, linear=linear,
                             linear_cfg=linear_cfg, weighted_temperature=weighted_temperature,
                             chunk_size=chunk_size, backend=backend, device=dev)
