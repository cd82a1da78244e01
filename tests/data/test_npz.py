"""npz: uint8 NHWC (or grayscale) arrays, optional classes; and the real shared CIFAR-10 subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from simxir.data import load_dataset
from simxir.errors import UserError

SHARED = Path(__file__).resolve().parents[2] / "../shared/data"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _arrays(rng: np.random.Generator, shape=(8, 8, 3)) -> dict[str, np.ndarray]:
    return {"x_train": rng.integers(0, 256, size=(10, *shape), dtype=np.uint8),
            "y_train": np.arange(10) % 3,
            "x_test": rng.integers(0, 256, size=(4, *shape), dtype=np.uint8),
            "y_test": np.array([2, 1, 0, 1])}


def test_npz_round_trip(tmp_path: Path) -> None:
    a = _arrays(np.random.default_rng(0))
    np.savez(tmp_path / "d.npz", **a, classes=np.array(["a", "bb", "ccc"]))
    ds = load_dataset(f"npz:{tmp_path / 'd.npz'}")
    assert ds.train.images.dtype == torch.uint8 and ds.train.images.shape == (10, 3, 8, 8)
    assert np.array_equal(ds.train.images.permute(0, 2, 3, 1).numpy(), a["x_train"])
    assert np.array_equal(ds.test.images.permute(0, 2, 3, 1).numpy(), a["x_test"])
    assert ds.train.labels.dtype == torch.int64 and ds.test.labels.tolist() == [2, 1, 0, 1]
    assert ds.classes == ["a", "bb", "ccc"]
    x = a["x_train"].astype(np.float64) / 255
    assert np.allclose(ds.mean, x.mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(ds.std, x.std(axis=(0, 1, 2)), atol=1e-9)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1)])
def test_grayscale_replicated(tmp_path: Path, shape) -> None:  # noqa: ANN001
    a = _arrays(np.random.default_rng(1), shape)
    np.savez(tmp_path / "g.npz", **a)
    ds = load_dataset(f"npz:{tmp_path / 'g.npz'}")
    gray = a["x_train"].reshape(10, 8, 8)
    for c in range(3):
        assert np.array_equal(ds.train.images[:, c].numpy(), gray)
    assert ds.classes == ["0", "1", "2"]  # no classes key: 0..max label


def test_npz_errors(tmp_path: Path) -> None:
    p = tmp_path / "e.npz"
    with pytest.raises(UserError, match="e.npz.*x_train"):
        load_dataset(f"npz:{p}")
    rng = np.random.default_rng(2)
    cases = {
        "missing key(s) y_test": lambda a: a.pop("y_test"),
        "out of range": lambda a: a.__setitem__("y_test", np.array([0, 1, 2, 3])),
        "4 labels for 10 images": lambda a: a.__setitem__("y_train", np.arange(4) % 3),
        "expected uint8": lambda a: a.__setitem__("x_train", a["x_train"].astype(np.float32)),
        "NHWC with C=1 or 3": lambda a: a.__setitem__("x_train", np.zeros((10, 3, 8, 8), np.uint8)),
        "integer labels": lambda a: a.__setitem__("y_train", np.arange(10) / 3),
        "test split is empty": lambda a: (a.__setitem__("x_test", np.zeros((0, 8, 8, 3), np.uint8)),
                                           a.__setitem__("y_test", np.zeros(0, np.int64))),
        "8px but test images are 4px": lambda a: a.__setitem__("x_test", np.zeros((4, 4, 4, 3), np.uint8)),
    }
    for msg, edit in cases.items():
        a = _arrays(rng)
        edit(a)
        np.savez(p, **a, classes=np.array(["a", "b", "c"]))
        with pytest.raises(UserError) as err:
            load_dataset(f"npz:{p}")
        assert msg in str(err.value) and "\n" not in str(err.value), msg
    np.savez(p, **_arrays(rng), classes=np.array([{"x": 1}], dtype=object))
    with pytest.raises(UserError, match="e.npz"):
        load_dataset(f"npz:{p}")
    p.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="e.npz"):
        load_dataset(f"npz:{p}")


@pytest.mark.shared
def test_real_cifar10_1k() -> None:
    path = SHARED / "cifar10-1k.npz"
    if not path.is_file():
        pytest.skip(f"real data absent: {path} (see ../shared/data/README.md)")
    ds = load_dataset(f"npz:{path}")
    assert ds.train.images.shape == (1000, 3, 32, 32) and ds.test.images.shape == (200, 3, 32, 32)
    assert ds.train.images.dtype == torch.uint8 and ds.train.labels.dtype == torch.int64
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train.labels.bincount().tolist() == [100] * 10 and ds.test.labels.bincount().tolist() == [20] * 10
    with np.load(path, allow_pickle=False) as z:
        assert np.array_equal(ds.train.images[17].permute(1, 2, 0).numpy(), z["x_train"][17])
    assert all(0.3 < m < 0.7 for m in ds.mean) and all(0.15 < s < 0.35 for s in ds.std)
