"""Image files decoded into memory: the labelled ImageFolder layout (``DIR/train/<class>/*.png|jpg|jpeg|webp``
and ``DIR/val/<class>/...`` or ``test/``) or an unlabelled collection (:mod:`simxir.data.index`).

Size rule: the crop size ``S`` is ``image_size`` when given, else the most common shorter side among
the train images (ties: the larger). Every image is stored as ``R`` x ``R`` with ``R = S`` up to 64 px
and ``R = round(S / 0.875)`` above (256 for 224: :func:`simxir.sizes.eval_resize`), so that the
evaluation's Resize(R) -> CenterCrop(S) has its pixels. An image that is already R x R is kept as
decoded; any other is center-cropped to a square of its shorter side and resized to R x R with
PIL's bilinear filter (which antialiases when shrinking).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from simxir.data.crops import to_rgb
from simxir.data.dataset import ImageDataset, Split
from simxir.data.index import FolderIndex, FolderSplit, folder_index
from simxir.errors import UserError
from simxir.progress import log, progress
from simxir.sizes import eval_resize


def _size(p: Path) -> tuple[int, int]:
    from PIL import Image  # noqa: PLC0415 - start-up time

    try:
        with Image.open(p) as im:
            return im.size
    except Exception as exc:  # noqa: BLE001 - PIL raises several types for bad files
        raise UserError(f"{p}: not a readable image ({exc.__class__.__name__})") from None


def _decode(p: Path, size: int) -> np.ndarray:
    from PIL import Image  # noqa: PLC0415 - start-up time

    try:
        with Image.open(p) as im:
            im = Image.fromarray(to_rgb(im))
            w, h = im.size
            if (w, h) != (size, size):
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{p}: not a readable image ({exc.__class__.__name__})") from None


def _load_split(split: FolderSplit, size: int, desc: str, pool: ThreadPoolExecutor, skip: bool = False) -> Split:
    """Decode every file of ``split``; with ``skip``, unreadable files are left out (counted, the
    first few named in the log) instead of stopping with the first one."""
    n = len(split)
    x = np.empty((n, size, size, 3), dtype=np.uint8)

    def read(i: int) -> np.ndarray | str:
        try:
            return _decode(split.path(i), size)
        except UserError as exc:
            if not skip:
                raise
            return str(exc)

    keep, bad = [], []
    for i, arr in enumerate(progress(pool.map(read, range(n)), desc=desc, total=n)):
        if isinstance(arr, str):
            bad.append(arr)
            continue
        x[len(keep)] = arr
        keep.append(i)
    if bad:
        log(f"{desc}: skipped {len(bad)} unreadable files (loader.skip_unreadable): {'; '.join(bad[:3])}")
    labels = split.labels[torch.tensor(keep, dtype=torch.int64)] if bad else split.labels.clone()
    return Split(torch.from_numpy(x[:len(keep)]).permute(0, 3, 1, 2).contiguous(), labels)


def load_folder(path: str | Path, image_size: int | None = None, workers: int | None = None,
                classes_file: str | Path | None = None, index: FolderIndex | None = None,
                labels: str = "on", name: str = "folder", skip_unreadable: bool = False) -> ImageDataset:
    """Decode the collection's images (``workers`` threads; default min(8, CPUs)) into an ImageDataset.

    ``classes_file`` selects classes (``simxir.data.index.read_class_list``); ``labels``: which
    kind of collection (:func:`simxir.data.index.folder_index`); ``index`` is a scanned index to
    use instead of scanning again. An unlabelled collection gives an unlabelled dataset.
    ``skip_unreadable`` leaves unreadable files out (logged) instead of stopping at the first."""
    index = index or folder_index(path, classes_file, labels=labels)
    workers = max(1, min(8, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    with ThreadPoolExecutor(workers) as pool:
        if image_size is None:
            def side(i: int) -> int | None:
                try:
                    return min(_size(index.train.path(i)))
                except UserError:
                    if not skip_unreadable:
                        raise
                    return None

            sizes = Counter(v for v in pool.map(side, range(len(index.train))) if v is not None)
            if not sizes:
                raise UserError(f"{path}: no readable image among {len(index.train)} train files")
            size = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
        else:
            size = int(image_size)
            if size <= 0:
                raise UserError(f"image_size: expected a positive integer, got {image_size}")
        stored = eval_resize(size)   # ImageNet-like sizes: 256 for a 224 crop (evaluation's centre crop)
        train = _load_split(index.train, stored, "decode train", pool, skip_unreadable)
        test = _load_split(index.test, stored, "decode val", pool, skip_unreadable) if len(index.test) else Split(
            torch.zeros(0, 3, stored, stored, dtype=torch.uint8), index.test.labels.clone())
    return ImageDataset(name, train, test, index.classes, crop_size=size if stored != size else 0)
