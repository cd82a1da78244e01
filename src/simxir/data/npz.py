"""Arrays in a ``.npz``: x_train/x_test uint8 NHWC (or grayscale NHW), y_train/y_test, optional classes."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from simxir.data.dataset import ImageDataset, from_numpy_nhwc
from simxir.errors import UserError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path) -> ImageDataset:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"{p}: no such .npz file (expected keys {', '.join(KEYS)}, optional classes)")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise UserError(f"{p}: missing keys {', '.join(missing)} (expected {', '.join(KEYS)}, "
                                f"optional classes)")
            arrays = {k: z[k] for k in (*KEYS, "classes") if k in z.files}
    except UserError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UserError(f"{p}: not a readable .npz without object arrays ({str(exc).splitlines()[0]})") from None
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
