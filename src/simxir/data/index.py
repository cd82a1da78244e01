"""The (file, label) index of an image folder: ``DIR/train/<class>/`` and ``DIR/val/<class>/`` (or
``test/``), scanned once and cached as an ``.npz`` next to the run; an optional class-list file
selects a subset (one class folder name per line, as solo-learn's ImageNet-100 list); and
:func:`arrange_val`, which moves ImageNet's flat validation images into class folders.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from simxir.errors import UserError
from simxir.io import atomic_write_bytes

EXTENSIONS = (".png", ".jpg", ".jpeg")
INDEX_VERSION = 1
INDEX_CACHE = "data-index.npz"  # a folder's (file, label) index, kept in the run folder


@dataclass
class FolderSplit:
    """One split of a folder, not decoded: ``files`` (relative to ``root``) and int64 ``labels``."""

    root: Path
    files: np.ndarray          # bytes (S) array of paths relative to root
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, i: int) -> Path:
        return self.root / os.fsdecode(bytes(self.files[i]))


@dataclass
class FolderIndex:
    root: Path
    classes: list[str]
    train: FolderSplit
    test: FolderSplit


def read_class_list(path: str | Path) -> list[str]:
    """Class folder names, one per line (blank lines and ``#`` comments ignored)."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"{p}: cannot read the class list ({exc.strerror or exc})") from None
    names = [ln.split("#", 1)[0].strip() for ln in lines]
    names = [n for n in names if n]
    if not names:
        raise UserError(f"{p}: the class list is empty (expected one class folder name per line)")
    if len(set(names)) != len(names):
        raise UserError(f"{p}: the class list names a class twice")
    return names


def _class_dirs(split_dir: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))


def _scan(split_dir: Path, root: Path, classes: list[str]) -> FolderSplit:
    files: list[bytes] = []
    labels: list[int] = []
    prefix = os.fsencode(str(split_dir.relative_to(root))) + b"/"
    for label, c in enumerate(classes):
        d = split_dir / c
        names = sorted(e.name for e in os.scandir(d) if e.is_file() and not e.name.startswith(".")
                       and os.path.splitext(e.name)[1].lower() in EXTENSIONS)
        if not names:
            raise UserError(f"{d}: no images ({'/'.join(EXTENSIONS)}) in this class folder")
        files.extend(prefix + os.fsencode(c) + b"/" + os.fsencode(n) for n in names)
        labels.extend([label] * len(names))
    return FolderSplit(root, np.array(files, dtype=np.bytes_), torch.tensor(labels, dtype=torch.int64))


def split_dirs(root: Path) -> tuple[Path, Path]:
    """``root/train`` and ``root/val`` (or ``root/test``); a UserError naming the layout otherwise."""
    train_dir = root / "train"
    val_dir = next((d for d in (root / "val", root / "test") if d.is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise UserError(f"{root}: expected folders train/<class>/ and val/<class>/ (or test/<class>/) "
                        f"holding {'/'.join(EXTENSIONS)} images")
    return train_dir, val_dir


def scan_folder(path: str | Path, classes_file: str | Path | None = None) -> FolderIndex:
    """Scan the folder's class folders and files (no image is opened)."""
    root = Path(path).expanduser()
    train_dir, val_dir = split_dirs(root)
    found = _class_dirs(train_dir)
    if not found:
        raise UserError(f"{train_dir}: no class folders")
    val_classes = _class_dirs(val_dir)
    if not val_classes and any(os.path.splitext(e.name)[1].lower() in EXTENSIONS
                               for e in os.scandir(val_dir) if e.is_file()):
        raise UserError(f"{val_dir}: holds flat images, not class folders; arrange them with "
                        f"`simxir data arrange-val {val_dir} --labels FILE` (ImageNet's ground truth)")
    if classes_file:
        classes = read_class_list(classes_file)
        missing = [c for c in classes if c not in found]
        if missing:
            raise UserError(f"{classes_file}: {len(missing)} listed classes are not folders of {train_dir} "
                            f"(first: {missing[0]})")
        missing = [c for c in classes if c not in set(val_classes)]
        if missing:
            raise UserError(f"{val_dir}: missing class folders listed in {classes_file} (first: {missing[0]})")
    else:
        classes = found
        if val_classes != classes:
            extra = sorted(set(val_classes) - set(classes))
            missing = sorted(set(classes) - set(val_classes))
            raise UserError(f"{val_dir}: class folders must match {train_dir} (extra: {extra[:5] or 'none'}, "
                            f"missing: {missing[:5] or 'none'})")
    return FolderIndex(root, classes, _scan(train_dir, root, classes), _scan(val_dir, root, classes))


def folder_index(path: str | Path, classes_file: str | Path | None = None,
                 cache: str | Path | None = None) -> FolderIndex:
    """The folder's index, read from ``cache`` when it was written for the same folder and class
    list, else scanned (and written to ``cache`` when given). Delete the cache to rescan."""
    root = Path(path).expanduser()
    key = f"{root.resolve()}|{Path(classes_file).expanduser().resolve() if classes_file else ''}"
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if int(z["version"]) == INDEX_VERSION and str(z["key"]) == key:
                classes = [str(c) for c in z["classes"]]
                return FolderIndex(root, classes,
                                   FolderSplit(root, z["train_files"], torch.from_numpy(z["train_labels"])),
                                   FolderSplit(root, z["test_files"], torch.from_numpy(z["test_labels"])))
    index = scan_folder(root, classes_file)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, version=INDEX_VERSION, key=key, classes=np.array(index.classes),
                 train_files=index.train.files, train_labels=index.train.labels.numpy(),
                 test_files=index.test.files, test_labels=index.test.labels.numpy())
        atomic_write_bytes(cache, buf.getvalue())
    return index


def read_val_labels(path: str | Path) -> dict[str, str]:
    """ImageNet validation ground truth as {file stem: class folder name}.

    Accepted: Kaggle's ``LOC_val_solution.csv`` (``ImageId,PredictionString`` whose first word is
    the WordNet id); a text file of ``FILE WNID`` lines; or one WNID per line in the order of the
    sorted file names (``imagenet_2012_validation_synset_labels.txt``), returned keyed by
    position as ``#0``, ``#1``, ...
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text()
    except OSError as exc:
        raise UserError(f"--labels {p}: cannot read it ({exc.strerror or exc})") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"--labels {p}: empty")
    out: dict[str, str] = {}
    if lines[0].lower().startswith("imageid"):
        for row in csv.DictReader(io.StringIO(text)):
            words = (row.get("PredictionString") or "").split()
            if not words or not row.get("ImageId"):
                raise UserError(f"--labels {p}: a row without ImageId/PredictionString: {row}")
            out[row["ImageId"]] = words[0]
        return out
    parts = [ln.split() for ln in lines]
    if all(len(q) == 1 for q in parts):
        return {f"#{i}": q[0] for i, q in enumerate(parts)}
    for q in parts:
        if len(q) < 2:
            raise UserError(f"--labels {p}: expected 'FILE WNID' lines, got {' '.join(q)!r}")
        out[Path(q[0]).stem] = q[1]
    return out


def arrange_val(val_dir: str | Path, labels: str | Path) -> dict[str, int]:
    """Move the flat images of ``val_dir`` into ``val_dir/<wnid>/`` by the ground-truth file.

    Every image must have a label (else nothing is moved). Returns ``{"images", "classes"}``.
    """
    d = Path(val_dir).expanduser()
    if not d.is_dir():
        raise UserError(f"{d}: not a folder")
    files = sorted(e.name for e in os.scandir(d) if e.is_file() and os.path.splitext(e.name)[1].lower()
                   in EXTENSIONS)
    if not files:
        raise UserError(f"{d}: no flat {'/'.join(EXTENSIONS)} images to arrange")
    truth = read_val_labels(labels)
    if next(iter(truth)).startswith("#"):
        if len(truth) != len(files):
            raise UserError(f"--labels {labels}: {len(truth)} labels for {len(files)} images in {d}")
        plan = {f: truth[f"#{i}"] for i, f in enumerate(files)}
    else:
        missing = [f for f in files if Path(f).stem not in truth]
        if missing:
            raise UserError(f"--labels {labels}: no label for {len(missing)} images of {d} (first: {missing[0]})")
        plan = {f: truth[Path(f).stem] for f in files}
    for f, wnid in plan.items():
        (d / wnid).mkdir(exist_ok=True)
        os.replace(d / f, d / wnid / f)
    return {"images": len(plan), "classes": len(set(plan.values()))}
