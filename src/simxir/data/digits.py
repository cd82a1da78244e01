"""scikit-learn's bundled 8x8 digits (no file needed): the embedded default dataset.

Pixels 0..16 are scaled by 255/16, upsampled to 16x16 (bilinear, ``align_corners=False``),
rounded to uint8 0..255 and replicated to 3 channels. Train/test is a stratified 80/20 split
(``sklearn.model_selection.train_test_split(test_size=0.2, stratify=y, random_state=0)``):
1437 train and 360 test images.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from simxir.data.dataset import ImageDataset, Split
from simxir.errors import UserError

SEED = 0
TEST_FRACTION = 0.2
DEFAULT_SIZE = 16


def load_digits_dataset(image_size: int | None = None) -> ImageDataset:
    from sklearn.datasets import load_digits  # noqa: PLC0415 - scikit-learn takes ~1 s to import
    from sklearn.model_selection import train_test_split  # noqa: PLC0415 - scikit-learn takes ~1 s to import

    size = DEFAULT_SIZE if image_size is None else int(image_size)
    if size <= 0:
        raise UserError(f"image_size: expected a positive integer, got {image_size}")
    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) * (255.0 / 16.0)).unsqueeze(1)  # (N, 1, 8, 8)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=size < 8)
    x = x.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = np.arange(len(y))
    tr, te = train_test_split(idx, test_size=TEST_FRACTION, stratify=d.target, random_state=SEED)
    tr, te = torch.from_numpy(np.sort(tr)), torch.from_numpy(np.sort(te))
    return ImageDataset("digits", Split(x[tr], y[tr]), Split(x[te], y[te]), [str(i) for i in range(10)])
