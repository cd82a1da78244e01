"""Split / ImageDataset validation and channel statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simxir.data import ImageDataset, Split, channel_stats, resize_images
from simxir.errors import UserError


def _split(n: int = 6, size: int = 4, seed: int = 0, classes: int = 3) -> Split:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return Split(x, torch.arange(n) % classes)


def test_channel_stats_match_numpy() -> None:
    x = torch.randint(0, 256, (5000, 3, 5, 5), dtype=torch.uint8)  # > one chunk
    mean, std = channel_stats(x)
    a = x.numpy().astype(np.float64) / 255
    assert np.allclose(mean, a.mean(axis=(0, 2, 3)), atol=1e-10)
    assert np.allclose(std, a.std(axis=(0, 2, 3)), atol=1e-10)


def test_dataset_properties_and_stats() -> None:
    ds = ImageDataset("t", _split(), _split(seed=1), ["a", "b", "c"])
    assert ds.image_size == 4 and ds.num_classes == 3
    assert ds.mean == channel_stats(ds.train.images)[0] and isinstance(ds.std, tuple) and len(ds.std) == 3
    given = ImageDataset("t", _split(), _split(), ["a", "b", "c"], mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))
    assert given.mean == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("bad,msg", [
    (lambda: Split(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64)), "uint8"),
    (lambda: Split(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)), "(N, 3, H, W)"),
    (lambda: Split(torch.zeros(2, 3, 4, 5, dtype=torch.uint8), torch.zeros(2, dtype=torch.int64)), "square"),
    (lambda: Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)), "lengths"),
    (lambda: Split(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(2)), "integer"),
    (lambda: ImageDataset("t", _split(), _split(), ["a", "b"]), "label 2 is out of range 0..1"),
    (lambda: ImageDataset("t", _split(), Split(torch.zeros(0, 3, 4, 4, dtype=torch.uint8),
                                               torch.zeros(0, dtype=torch.int64)), ["a", "b", "c"]),
     "test split is empty"),
    (lambda: ImageDataset("t", _split(), _split(size=5), ["a", "b", "c"]), "must match"),
    (lambda: ImageDataset("t", _split(), _split(), []), "empty"),
])
def test_validation_errors(bad, msg) -> None:  # noqa: ANN001
    with pytest.raises(UserError) as err:
        bad()
    assert msg in str(err.value) and "\n" not in str(err.value)


def test_resize_images() -> None:
    x = torch.full((2, 3, 8, 8), 77, dtype=torch.uint8)
    y = resize_images(x, 4)
    assert y.shape == (2, 3, 4, 4) and y.dtype == torch.uint8 and bool((y == 77).all())  # constant stays constant
    assert resize_images(x, 8) is x
    ramp = torch.arange(8, dtype=torch.uint8).repeat(1, 3, 8, 1) * 30  # columns 0, 30, ..., 210
    # antialiased 2x downsample = triangle filter, taps (1, 3, 3, 1)/8 around each output centre,
    # renormalised where taps fall outside the image: edges (3*0 + 3*30 + 60)/7, (150 + 3*180 + 3*210)/7
    expect = [round(150 / 7), (30 + 3 * 60 + 3 * 90 + 120) / 8, (90 + 3 * 120 + 3 * 150 + 180) / 8, round(1320 / 7)]
    assert resize_images(ramp, 4)[0, 0, 0].tolist() == expect
