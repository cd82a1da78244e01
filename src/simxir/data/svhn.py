"""SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat``; label 10 means digit 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from simxir.data.dataset import ImageDataset, Split, from_numpy_nhwc
from simxir.errors import UserError
from simxir.io import require_file

FILES = ("train_32x32.mat", "test_32x32.mat")


def _load_mat(p: Path) -> Split:
    import scipy.io  # noqa: PLC0415 - scipy.io is slow to import and only SVHN needs it

    require_file(p, f"the SVHN file {p.name}: {' and '.join(FILES)} in {p.parent}")
    try:
        m = scipy.io.loadmat(p)
    except Exception as exc:  # noqa: BLE001 - scipy raises several types (incl. for v7.3/HDF5 files)
        raise UserError(f"{p}: not a readable MATLAB v5 .mat file ({exc.__class__.__name__})") from None
    if "X" not in m or "y" not in m:
        raise UserError(f"{p}: expected variables 'X' (H x W x C x N) and 'y' (N x 1)")
    x, y = m["X"], np.asarray(m["y"])
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3:
        raise UserError(f"{p}: expected 'X' shaped H x W x 3 x N, got {getattr(x, 'shape', None)}")
    y = y.reshape(-1) if y.ndim == 2 and 1 in y.shape else y
    if y.ndim != 1 or y.shape[0] != x.shape[3]:
        raise UserError(f"{p}: expected 'y' with {x.shape[3]} labels (N x 1), got shape {y.shape}")
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 1 or y.max() > 10):
        bad = y[(np.mod(y, 1) != 0) | (y < 1) | (y > 10)][0]
        raise UserError(f"{p}: label {bad} is out of range 1..10 (10 means digit 0)")
    labels = y.astype(np.int64) % 10
    return from_numpy_nhwc(np.ascontiguousarray(x.transpose(3, 0, 1, 2)), labels, str(p))


def load_svhn(path: str | Path) -> ImageDataset:
    d = Path(path).expanduser()
    if not d.is_dir():
        raise UserError(f"{d}: expected a folder holding {' and '.join(FILES)}")
    train, test = (_load_mat(d / f) for f in FILES)
    try:
        return ImageDataset("svhn", train, test, [str(i) for i in range(10)])
    except UserError as exc:
        raise UserError(f"{d}: {exc}") from None
