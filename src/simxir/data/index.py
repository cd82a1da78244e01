"""The (file, label) index of image files, scanned once and cached as an ``.npz`` next to the run.

Two kinds of collection (:func:`is_labelled_layout` decides for ``folder:DIR``; ``imagefolder:DIR``
and ``images:DIR`` force one):

- **labelled**: ``DIR/train/<class>/`` and ``DIR/val/<class>/`` (or ``test/``); an optional class-list
  file selects a subset (one class folder name per line, as solo-learn's ImageNet-100 list);
- **unlabelled**: every image file under ``DIR`` at any depth (:func:`scan_images`), or the files a
  list names (``files:LIST``, :func:`read_file_list`); labels are :data:`UNLABELLED` and there is no
  test split.

:func:`arrange_val` moves ImageNet's flat validation images into class folders.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from simxir.data.dataset import UNLABELLED
from simxir.errors import UserError
from simxir.io import atomic_write_bytes
from simxir.progress import log

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")   # compared lower-cased: .JPEG counts
INDEX_VERSION = 2
INDEX_CACHE = "data-index.npz"  # a folder's (file, label) index, kept in the run folder
EVAL_INDEX_CACHE = "eval-data-index.npz"   # the same for the run's --eval-data
ARRANGE_RECORD = ".simxir-arrange-val.json"   # arrange-val's moves, for --undo


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
    """A collection's index; ``classes`` is empty (and ``test`` has no files) when unlabelled."""

    root: Path
    classes: list[str]
    train: FolderSplit
    test: FolderSplit


def empty_split(root: Path) -> FolderSplit:
    return FolderSplit(root, np.array([], dtype=np.bytes_), torch.zeros(0, dtype=torch.int64))


def is_labelled_layout(root: Path) -> bool:
    """The one rule ``folder:DIR`` follows: labelled when ``DIR/train`` holds at least one folder and
    ``DIR/val`` (or ``DIR/test``) exists; unlabelled (every image at any depth) otherwise."""
    train = root / "train"
    if not train.is_dir() or not ((root / "val").is_dir() or (root / "test").is_dir()):
        return False
    return any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(train))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in EXTENSIONS


def scan_images(path: str | Path) -> FolderIndex:
    """Every image file under ``path`` at any depth (hidden files and folders skipped, symbolic links
    to folders not followed), in sorted path order, as an unlabelled collection."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise UserError(f"{root}: {'not a folder' if root.exists() else 'no such folder'} "
                        f"(expected a folder of images)")
    files: list[bytes] = []
    for d, dirs, names in os.walk(root, onerror=_walk_error):
        dirs[:] = sorted(n for n in dirs if not n.startswith("."))
        rel = os.path.relpath(d, root)
        prefix = b"" if rel == "." else os.fsencode(rel) + b"/"
        files.extend(prefix + os.fsencode(n) for n in sorted(names) if _is_image(n))
    if not files:
        raise UserError(f"{root}: no images ({'/'.join(EXTENSIONS)}, any case, at any depth) in this folder")
    return _unlabelled(root, sorted(files))


def _walk_error(exc: OSError) -> None:
    raise UserError(f"{exc.filename}: cannot list this folder ({exc.strerror or exc})")


def _unlabelled(root: Path, files: list[bytes]) -> FolderIndex:
    labels = torch.full((len(files),), UNLABELLED, dtype=torch.int64)
    return FolderIndex(root, [], FolderSplit(root, np.array(files, dtype=np.bytes_), labels), empty_split(root))


def read_file_list(path: str | Path) -> FolderIndex:
    """The images a list file names, one path per line, relative to the list's folder (or absolute);
    blank lines and ``#`` comments ignored. Every file must exist and be an image file."""
    p = Path(path).expanduser()
    try:
        lines = p.read_text().splitlines()
    except UnicodeDecodeError:
        raise UserError(f"{p}: not a text file (expected one image path per line)") from None
    except OSError as exc:
        raise UserError(f"{p}: cannot read the file list ({exc.strerror or exc})") from None
    root = p.parent
    files: list[bytes] = []
    for n, line in enumerate(lines, 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        f = root / name
        if not f.is_file():
            raise UserError(f"{p}:{n}: {name} {'is not a file' if f.exists() else 'does not exist'} "
                            f"(paths are relative to the list's folder {root})")
        if os.path.splitext(name)[1].lower() not in EXTENSIONS:
            raise UserError(f"{p}:{n}: {name} is not an image file (expected {'/'.join(EXTENSIONS)})")
        files.append(os.fsencode(name))
    if not files:
        raise UserError(f"{p}: the file list is empty (expected one image path per line)")
    return _unlabelled(root, files)


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
        names = sorted(e.name for e in os.scandir(d) if e.is_file() and _is_image(e.name))
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


LABELS = ("auto", "on", "off", "list")   # folder:, imagefolder:, images:, files:


def folder_index(path: str | Path, classes_file: str | Path | None = None,
                 cache: str | Path | None = None, labels: str = "on") -> FolderIndex:
    """The collection's index, read from ``cache`` when it was written for the same path, kind and
    class list, else scanned (and written to ``cache`` when given). Delete the cache to rescan.

    ``labels``: ``on`` the labelled layout, ``off`` every image under ``path``, ``auto``
    :func:`is_labelled_layout` decides, ``list`` ``path`` is a file list."""
    if labels not in LABELS:
        raise ValueError(f"labels: expected one of {LABELS}, got {labels!r}")
    root = Path(path).expanduser()
    if labels == "auto":
        labels = "on" if is_labelled_layout(root) else "off"
    if classes_file and labels != "on":
        raise UserError(f"loader.classes: selects class folders of a labelled folder; {root} is read as an "
                        f"unlabelled collection")
    key = f"{labels}|{root.resolve()}|{Path(classes_file).expanduser().resolve() if classes_file else ''}"
    if cache is not None and Path(cache).is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if int(z["version"]) == INDEX_VERSION and str(z["key"]) == key:
                    classes = [str(c) for c in z["classes"]]
                    base = root.parent if labels == "list" else root   # a list's paths are relative to its folder
                    return FolderIndex(base, classes,
                                       FolderSplit(base, z["train_files"], torch.from_numpy(z["train_labels"])),
                                       FolderSplit(base, z["test_files"], torch.from_numpy(z["test_labels"])))
        except Exception as exc:  # noqa: BLE001 - a damaged cache (zipfile, KeyError, ValueError...) is rebuilt
            log(f"{cache}: damaged index cache ({type(exc).__name__}); scanning {root} again")
    if labels == "on":
        index = scan_folder(root, classes_file)
    else:
        index = read_file_list(root) if labels == "list" else scan_images(root)
    if cache is not None:
        buf = io.BytesIO()
        np.savez(buf, version=INDEX_VERSION, key=key, classes=np.array(index.classes, dtype=np.str_),
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

    Every image must have a label that is a plain folder name, and no destination may exist (else
    nothing is moved). The moves are recorded in ``val_dir/.simxir-arrange-val.json`` first, so
    :func:`undo_arrange_val` can move them back. Returns ``{"images", "classes"}``.
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
    for f, wnid in plan.items():   # every label and destination checked before anything moves
        if not wnid or wnid in (".", "..") or "/" in wnid or os.sep in wnid or "\0" in wnid:
            raise UserError(f"--labels {labels}: label {wnid!r} of {f} is not a folder name; nothing was moved")
        if (d / wnid).exists() and not (d / wnid).is_dir():
            raise UserError(f"{d / wnid}: is a file, not a class folder for {f}; nothing was moved")
        if (d / wnid / f).exists():
            raise UserError(f"{d / wnid / f}: already exists; nothing was moved")
    atomic_write_bytes(d / ARRANGE_RECORD, json.dumps(plan, indent=0).encode())   # what undo_arrange_val moves back
    for f, wnid in plan.items():
        (d / wnid).mkdir(exist_ok=True)
        os.replace(d / f, d / wnid / f)
    return {"images": len(plan), "classes": len(set(plan.values()))}


def undo_arrange_val(val_dir: str | Path) -> dict[str, int]:
    """Move the images :func:`arrange_val` arranged back to the flat folder (its record says which),
    remove the class folders it left empty and the record. Returns ``{"images", "classes"}``."""
    d = Path(val_dir).expanduser()
    record = d / ARRANGE_RECORD
    try:
        plan = json.loads(record.read_text())
    except (OSError, ValueError):
        raise UserError(f"{record}: no readable record of an arrange-val in {d}; nothing to undo") from None
    missing = [f for f, wnid in plan.items() if not (d / wnid / f).is_file() and not (d / f).is_file()]
    if missing:
        raise UserError(f"{d}: {len(missing)} arranged images are gone (first: {missing[0]}); nothing was moved")
    for f, wnid in plan.items():
        if (d / wnid / f).is_file():
            os.replace(d / wnid / f, d / f)
    for wnid in set(plan.values()):
        with contextlib.suppress(OSError):
            (d / wnid).rmdir()   # only when empty
    record.unlink()
    return {"images": len(plan), "classes": len(set(plan.values()))}
