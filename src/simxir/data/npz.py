"""Arrays in a ``.npz``: x_train/x_test uint8 NHWC (or grayscale NHW), y_train/y_test, optional classes."""

from __future__ import annotations

from pathlib import Path

from simxir.data.dataset import ImageDataset, from_numpy_nhwc
from simxir.errors import UserError
from simxir.io import read_npz

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path) -> ImageDataset:
    p = Path(path).expanduser()
    arrays = read_npz(p, KEYS, optional=("classes",))
    train = from_numpy_nhwc(arrays["x_train"], arrays["y_train"], f"{p}: x_train/y_train")
    test = from_numpy_nhwc(arrays["x_test"], arrays["y_test"], f"{p}: x_test/y_test")
    if "classes" in arrays:
        c = arrays["classes"]
        if c.ndim != 1 or c.dtype.kind not in "US":
            raise UserError(f"{p}: expected 'classes' as a 1-D string array, got {c.dtype} {c.shape}")
        classes = [v.decode() if isinstance(v, bytes) else str(v) for v in c.tolist()]
    else:
        top = max(int(train.labels.max()) if len(train) else 0, int(test.labels.max()) if len(test) else 0)
        classes = [str(i) for i in range(top + 1)]
    try:
        return ImageDataset("npz", train, test, classes)
    except UserError as exc:
        raise UserError(f"{p}: {exc}") from None
