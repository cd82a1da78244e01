"""The embedded digits dataset: values, upsampling, and the stratified 80/20 split."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits

from simxir.data import load_dataset


def _bilinear_x2(img: np.ndarray) -> np.ndarray:
    """Half-pixel-centred bilinear 2x upsampling written out (edges clamp)."""
    n = img.shape[0]
    src = (np.arange(2 * n) + 0.5) / 2 - 0.5
    src = np.clip(src, 0, n - 1)
    lo = np.floor(src).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    t = src - lo
    rows = img[lo] * (1 - t)[:, None] + img[hi] * t[:, None]
    return rows[:, lo] * (1 - t)[None, :] + rows[:, hi] * t[None, :]


def test_digits_split_and_pixels() -> None:
    ds = load_dataset("digits")
    ref = load_digits()
    assert (len(ds.train), len(ds.test)) == (1437, 360)
    assert ds.image_size == 16 and ds.classes == [str(i) for i in range(10)] and ds.name == "digits"
    # stratified: each class's test share is 20% up to rounding
    full = np.bincount(ref.target, minlength=10)
    test = ds.test.labels.bincount(minlength=10).numpy()
    assert np.all(np.abs(test - 0.2 * full) <= 1)
    # every image is one of sklearn's, upsampled; train and test are disjoint and cover the data
    flat = {tuple(np.rint(_bilinear_x2(im * 255.0 / 16)).astype(np.uint8).ravel()): int(t)
            for im, t in zip(ref.images, ref.target)}
    seen = 0
    for split in (ds.train, ds.test):
        assert torch.equal(split.images[:, 0], split.images[:, 1])
        assert torch.equal(split.images[:, 0], split.images[:, 2])
        for img, lab in zip(split.images[::37, 0], split.labels[::37]):
            assert flat[tuple(img.numpy().ravel())] == int(lab)
            seen += 1
    assert seen > 40
    assert len(ds.train) + len(ds.test) == len(ref.target)


def test_digits_deterministic() -> None:
    a, b = load_dataset("digits"), load_dataset("digits")
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.test.labels, b.test.labels)
    assert load_dataset("digits", image_size=8).train.images.shape[2:] == (8, 8)
