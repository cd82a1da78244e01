"""Batched, device-agnostic two-view augmentations for self-supervised pretraining.

>>> aug = build_augment("simsiam-cifar", 32, mean, std)
>>> v1, v2 = aug.views(x_uint8_nchw)      # normalized float32 on x's device
>>> z = aug.eval(x_uint8_nchw)            # deterministic
"""

from simxir.augment.pipeline import (
    RECIPES,
    SMALL_BATCH_ELEMENTS,
    Augment,
    ViewSpec,
    auto_recipe,
    blur_kernel_size,
    build_augment,
)

__all__ = ["RECIPES", "SMALL_BATCH_ELEMENTS", "Augment", "ViewSpec", "auto_recipe", "blur_kernel_size", "build_augment"]
