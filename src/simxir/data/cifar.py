"""CIFAR-10 / CIFAR-100 from the python-pickle batches folder or its ``.tar.gz`` archive."""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from simxir.data.dataset import ImageDataset, Split
from simxir.data.safe_pickle import safe_loads
from simxir.errors import UserError
from simxir.io import require_file

# variant -> (folder name, archive name, train files, test files, meta file, label key, names key)
_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz",
                 ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


def _str_keys(d: object, where: str) -> dict[str, object]:
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a pickled dict, got {type(d).__name__}")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def _reader(path: Path, variant: str) -> tuple[Callable[[str], bytes], str]:
    """Find the batches (folder itself, its parent, the archive, or the archive's parent)."""
    folder, archive, train_files, test_files, meta, _, _ = _LAYOUTS[variant]
    if path.is_dir():
        for d in (path, path / folder):
            if (d / train_files[0]).is_file():
                return (lambda name, d=d: _read_file(d / name)), str(d)
        if (path / archive).is_file():
            path = path / archive
    if path.is_file():
        return _read_archive(path, folder, {*train_files, *test_files, meta}), str(path)
    raise UserError(f"{path}: expected the {folder}/ folder (with {', '.join(train_files[:2])}...), its "
                    f"parent, or {archive}")


def _read_archive(path: Path, folder: str, needed: set[str]) -> Callable[[str], bytes]:
    """Read the needed members of a (gzipped) tar in one sequential pass; nothing is extracted."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for m in tf:
                base = m.name.rsplit("/", 1)[-1]
                if m.isfile() and base in needed and base not in found:
                    f = tf.extractfile(m)
                    if f is not None:
                        found[base] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable tar archive of {folder}/ ({exc})") from None

    def read(name: str) -> bytes:
        if name not in found:
            raise UserError(f"{path}: archive has no member {folder}/{name}")
        return found[name]

    return read


def _read_file(p: Path) -> bytes:
    require_file(p, f"the CIFAR file {p.name} in {p.parent}")
    return p.read_bytes()


def _load_batch(read: Callable[[str], bytes], where: str, name: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    w = f"{where}/{name}"
    d = _str_keys(safe_loads(read(name), w), w)
    if "data" not in d or label_key not in d:
        raise UserError(f"{w}: expected keys 'data' and '{label_key}', got {sorted(d)}")
    x, y = d["data"], np.asarray(d[label_key])
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise UserError(f"{w}: expected 'data' as uint8 N x 3072, got {got}")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.shape[0] != x.shape[0]:
        raise UserError(f"{w}: expected {x.shape[0]} integer labels in '{label_key}', got {y.dtype} {y.shape}")
    return x, y


def load_cifar(path: str | Path, variant: str = "cifar10") -> ImageDataset:
    """Load CIFAR-10 (``variant="cifar10"``) or CIFAR-100 fine labels (``"cifar100"``)."""
    read, where = _reader(Path(path).expanduser(), variant)
    return _load(read, where, variant)


def _load(read: Callable[[str], bytes], where: str, variant: str) -> ImageDataset:
    _, _, train_files, test_files, meta, label_key, names_key = _LAYOUTS[variant]
    m = _str_keys(safe_loads(read(meta), f"{where}/{meta}"), f"{where}/{meta}")
    if names_key not in m or not isinstance(m[names_key], list):
        raise UserError(f"{where}/{meta}: expected a list '{names_key}'")
    classes = [c.decode("utf-8") if isinstance(c, bytes) else str(c) for c in m[names_key]]

    def split(files: list[str]) -> Split:
        xs, ys = zip(*(_load_batch(read, where, f, label_key) for f in files))
        x = np.concatenate(xs).reshape(-1, 3, 32, 32)
        y = np.concatenate(ys).astype(np.int64)
        return Split(torch.from_numpy(x), torch.from_numpy(y))

    train, test = split(train_files), split(test_files)
    try:
        return ImageDataset(variant, train, test, classes)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None
