"""SVHN .mat files as scipy writes them: X is H x W x C x N, y is N x 1 with 10 meaning digit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from simxir.data import load_dataset
from simxir.errors import UserError


def write_svhn(d: Path, rng: np.random.Generator, n_train: int = 12, n_test: int = 5) -> dict:
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8).reshape(n, 1) % 10 + 1  # 1..10, every digit present
        scipy.io.savemat(d / f"{name}_32x32.mat", {"X": x, "y": y})
        out[name] = (x, y)
    return out


def test_svhn_pixels_and_label_mapping(tmp_path: Path) -> None:
    w = write_svhn(tmp_path, np.random.default_rng(0))
    ds = load_dataset(f"svhn:{tmp_path}")
    x, y = w["train"]
    assert ds.train.images.shape == (12, 3, 32, 32)
    for i in (0, 5, 11):
        for c in range(3):
            assert np.array_equal(ds.train.images[i, c].numpy(), x[:, :, c, i])
    expected = [0 if v == 10 else int(v) for v in y[:, 0]]
    assert ds.train.labels.tolist() == expected
    assert ds.train.labels.tolist()[9] == 0  # the label 10 -> digit 0
    assert ds.classes == [str(i) for i in range(10)]
    assert np.array_equal(ds.test.images[4, 1].numpy(), w["test"][0][:, :, 1, 4])


def test_svhn_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="train_32x32.mat"):
        load_dataset(f"svhn:{tmp_path}")
    write_svhn(tmp_path, np.random.default_rng(1))
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(UserError, match="test_32x32.mat"):
        load_dataset(f"svhn:{tmp_path}")
    x = np.zeros((32, 32, 3, 4), dtype=np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [2], [0], [3]])})
    with pytest.raises(UserError, match="label 0 is out of range 1..10"):
        load_dataset(f"svhn:{tmp_path}")
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [2], [3]])})
    with pytest.raises(UserError, match="4 labels"):
        load_dataset(f"svhn:{tmp_path}")
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(UserError, match="test_32x32.mat"):
        load_dataset(f"svhn:{tmp_path}")
