"""ImageFolder layout: ``DIR/train/<class>/*.png|jpg|jpeg`` and ``DIR/val/<class>/...`` (or ``test/``).

Size rule: every image becomes ``S`` x ``S``. ``S`` is ``image_size`` when given, else the most
common shorter side among the train images (ties: the larger). An image that is already S x S is
kept as decoded; any other is center-cropped to a square of its shorter side and resized to S x S
with PIL's bilinear filter (which antialiases when shrinking).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from simxir.data.dataset import ImageDataset, Split
from simxir.errors import UserError
from simxir.progress import progress

EXTENSIONS = (".png", ".jpg", ".jpeg")


def _classes(split_dir: Path) -> list[str]:
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(split_dir: Path, classes: list[str]) -> list[tuple[Path, int]]:
    out = []
    for label, c in enumerate(classes):
        files = sorted(p for p in (split_dir / c).iterdir()
                       if p.is_file() and p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        if not files:
            raise UserError(f"{split_dir / c}: no images ({'/'.join(EXTENSIONS)}) in this class folder")
        out.extend((p, label) for p in files)
    return out


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
            im = im.convert("RGB")
            w, h = im.size
            if (w, h) != (size, size):
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s)).resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{p}: not a readable image ({exc.__class__.__name__})") from None


def _load_split(files: list[tuple[Path, int]], size: int, desc: str, pool: ThreadPoolExecutor) -> Split:
    x = np.empty((len(files), size, size, 3), dtype=np.uint8)
    it = pool.map(lambda f: _decode(f[0], size), files)
    for i, arr in enumerate(progress(it, desc=desc, total=len(files))):
        x[i] = arr
    y = torch.tensor([label for _, label in files], dtype=torch.int64)
    return Split(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), y)


def load_folder(path: str | Path, image_size: int | None = None, workers: int | None = None) -> ImageDataset:
    """Decode the folder's images (``workers`` threads; default min(8, CPUs)) into an ImageDataset."""
    root = Path(path).expanduser()
    train_dir = root / "train"
    val_dir = next((d for d in (root / "val", root / "test") if d.is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise UserError(f"{root}: expected folders train/<class>/ and val/<class>/ (or test/<class>/) "
                        f"holding {'/'.join(EXTENSIONS)} images")
    classes = _classes(train_dir)
    if not classes:
        raise UserError(f"{train_dir}: no class folders")
    val_classes = _classes(val_dir)
    if val_classes != classes:
        extra = sorted(set(val_classes) - set(classes))
        missing = sorted(set(classes) - set(val_classes))
        raise UserError(f"{val_dir}: class folders must match {train_dir} (extra: {extra or 'none'}, "
                        f"missing: {missing or 'none'})")
    train_files, val_files = _files(train_dir, classes), _files(val_dir, classes)
    workers = max(1, min(8, os.cpu_count() or 1)) if workers is None else max(1, int(workers))
    with ThreadPoolExecutor(workers) as pool:
        if image_size is None:
            sizes = Counter(min(s) for s in pool.map(lambda f: _size(f[0]), train_files))
            size = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
        else:
            size = int(image_size)
            if size <= 0:
                raise UserError(f"image_size: expected a positive integer, got {image_size}")
        train = _load_split(train_files, size, "decode train", pool)
        test = _load_split(val_files, size, f"decode {val_dir.name}", pool)
    return ImageDataset("folder", train, test, classes)
