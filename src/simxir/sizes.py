"""The evaluation transform's sizes, shared by the data loaders and the augmentations.

Images larger than 64 px (ImageNet-like) are evaluated as the anchors do: Resize(S / 0.875) ->
CenterCrop(S), i.e. Resize(256) -> CenterCrop(224). Smaller images (CIFAR, SVHN, STL at 64) keep
the whole image: Resize(S) -> CenterCrop(S).
"""

from __future__ import annotations

EVAL_CROP_RATIO = 0.875   # Resize(256) -> CenterCrop(224)
LARGE_IMAGE = 64          # the evaluation crop applies above this crop size


def eval_crop_ratio(size: int) -> float:
    """The central fraction of the resized image that the evaluation keeps at crop size ``size``."""
    return EVAL_CROP_RATIO if size > LARGE_IMAGE else 1.0


def eval_resize(size: int) -> int:
    """The shorter side the evaluation resizes to before its central ``size`` x ``size`` crop."""
    return max(size, int(round(size / eval_crop_ratio(size))))
