"""Batched, device-agnostic augmentations for self-supervised pretraining: one view per spec.

>>> aug = build_augment("simsiam-cifar", 32, mean, std)
>>> v1, v2 = aug.views(x_uint8_nchw)      # normalized float32 on x's device
>>> z = aug.eval(x_uint8_nchw)            # deterministic
>>> aug = build_augment("dino", 224, mean, std, multicrop=MultiCropConfig(local_crops=8))   # 2 + 8 views
"""

from simxir.augment.pipeline import (
    RAW,
    RECIPES,
    SMALL_BATCH_ELEMENTS,
    Augment,
    MultiCropConfig,
    ViewSpec,
    auto_recipe,
    blur_kernel_size,
    build_augment,
    local_size_for,
    view_specs,
)

__all__ = ["RAW", "RECIPES", "SMALL_BATCH_ELEMENTS", "Augment", "MultiCropConfig", "ViewSpec", "auto_recipe",
           "blur_kernel_size", "build_augment", "local_size_for", "view_specs"]
