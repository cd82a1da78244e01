"""Frozen-encoder feature extraction: uint8 images in, float32 CPU features out."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from simxir.errors import UserError
from simxir.progress import progress

Transform = Callable[[torch.Tensor], torch.Tensor]


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """Default transform: uint8 0..255 -> float 0..1 (no normalisation)."""
    return x.float().div_(255.0)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); cpu for a parameterless model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def resolve_transform(augment_or_transform: object | None) -> Transform:
    """Accept an ``Augment`` (its ``.eval`` is used), a callable, or None (scale to 0..1)."""
    if augment_or_transform is None:
        return _to_float
    ev = getattr(augment_or_transform, "eval", None)
    if callable(ev) and not isinstance(augment_or_transform, nn.Module):
        return ev
    if callable(augment_or_transform):
        return augment_or_transform  # type: ignore[return-value]
    raise TypeError(f"expected an Augment or a callable transform, got {type(augment_or_transform)!r}")


def extract_features(
    model: nn.Module,
    images_uint8: torch.Tensor,
    transform: object | None = None,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    desc: str = "features",
) -> torch.Tensor:
    """Run ``model`` in eval mode over ``images_uint8`` (N, 3, H, W) in batches; return (N, d) float32 on CPU.

    ``transform`` is an ``Augment`` (its deterministic ``.eval`` is used), any callable mapping a
    uint8 batch on ``device`` to the model's input, or None (divide by 255). ``device`` defaults to
    the model's device. The model's train/eval mode is restored afterwards.
    """
    if not isinstance(images_uint8, torch.Tensor) or images_uint8.ndim != 4:
        shape = tuple(images_uint8.shape) if isinstance(images_uint8, torch.Tensor) else type(images_uint8)
        raise UserError(f"images: expected a uint8 tensor of shape (N, 3, H, W), got {shape}")
    if batch_size < 1:
        raise UserError(f"--batch-size: expected a positive integer, got {batch_size}")
    tf = resolve_transform(transform)
    dev = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    n = images_uint8.shape[0]
    chunks: list[torch.Tensor] = []
    try:
        with torch.inference_mode():
            starts = range(0, n, batch_size)
            for s in progress(starts, desc=desc, total=len(starts)):
                xb = images_uint8[s:s + batch_size].to(dev, non_blocking=True)
                fb = model(tf(xb))
                if fb.ndim != 2:
                    fb = fb.flatten(1)
                chunks.append(fb.float().cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return torch.zeros(0, 0, dtype=torch.float32)
    return torch.cat(chunks, 0)
