"""The in-memory dataset types: ``Split`` and ``ImageDataset`` (uint8 NCHW images, int64 labels)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from simxir.errors import UserError

_STATS_CHUNK = 4096  # images per chunk for statistics and resizing
UNLABELLED = -1      # the label of every image of an unlabelled collection (no classes, no test split)


@dataclass
class Split:
    """One split: ``images`` uint8 (N, 3, H, W) and ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        x, y = self.images, self.labels
        if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise UserError(f"images: expected a uint8 tensor of shape (N, 3, H, W), got {got}")
        if x.shape[2] != x.shape[3]:
            raise UserError(f"images: expected square images (H == W), got {x.shape[2]}x{x.shape[3]}")
        if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise UserError(f"labels: expected an integer tensor of shape (N,), got {got}")
        if y.shape[0] != x.shape[0]:
            raise UserError(f"labels: {y.shape[0]} labels for {x.shape[0]} images (lengths must match)")
        self.images = x.contiguous()
        self.labels = y.to(torch.int64).contiguous()

    def __len__(self) -> int:
        return int(self.images.shape[0])


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and (population) std of uint8 NCHW images scaled to [0, 1].

    Exact: a 256-bin histogram per channel (integer counts, chunked, no float copy of the images),
    from which the mean and variance follow in float64.
    """
    n = images.shape[0]
    if n == 0:
        raise UserError("images: cannot compute statistics of an empty split")
    counts = torch.zeros(3, 256, dtype=torch.int64, device=images.device)
    for i in range(0, n, _STATS_CHUNK):
        for ch in range(3):
            counts[ch] += torch.bincount(images[i:i + _STATS_CHUNK, ch].reshape(-1), minlength=256)
    v = torch.arange(256, dtype=torch.float64, device=images.device)
    c = counts.to(torch.float64)
    total = c.sum(dim=1)
    mean = (c * v).sum(dim=1) / total
    var = ((c * (v - mean[:, None]) ** 2).sum(dim=1) / total).clamp_min(0.0)
    mean01 = (mean / 255.0).tolist()
    std01 = (var.sqrt() / 255.0).tolist()
    return (mean01[0], mean01[1], mean01[2]), (std01[0], std01[1], std01[2])


class Classes:
    """What an in-memory and a streamed dataset say alike about their ``classes`` list."""

    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labelled(self) -> bool:
        return bool(self.classes)


@dataclass
class ImageDataset(Classes):
    """Train and test splits with class names and the train split's per-channel mean/std in [0, 1].

    ``mean``/``std`` are computed from ``train`` when left as ``None``. ``crop_size``: the crop the
    networks see when the images are stored larger (ImageNet-like folders are stored at
    ``simxir.sizes.eval_resize(crop)``, 256 for 224, so that evaluation can centre-crop them). Construction checks that
    both splits are non-empty, share one image size, and have labels in ``0..len(classes)-1``.

    An empty ``classes`` list makes an **unlabelled** dataset (``labelled`` False): every train label
    is :data:`UNLABELLED` and ``test`` holds no image (training uses no label; evaluation takes a
    labelled dataset of its own).
    """

    name: str
    train: Split
    test: Split
    classes: list[str]
    mean: tuple[float, float, float] = field(default=None)  # type: ignore[assignment]
    std: tuple[float, float, float] = field(default=None)  # type: ignore[assignment]
    crop_size: int = 0     # the network's input size when the stored images are larger (0: stored)

    def __post_init__(self) -> None:
        self.classes = [str(c) for c in self.classes]
        if not self.classes:
            if len(self.train) == 0:
                raise UserError(f"{self.name}: no images")
            if len(self.test) or bool((self.train.labels != UNLABELLED).any()):
                raise UserError(f"{self.name}: the class list is empty but the images have labels")
        for split_name, split in (("train", self.train), ("test", self.test)) if self.classes else ():
            if len(split) == 0:
                raise UserError(f"{self.name}: the {split_name} split is empty")
            lo, hi = int(split.labels.min()), int(split.labels.max())
            if lo < 0 or hi >= len(self.classes):
                bad = lo if lo < 0 else hi
                raise UserError(f"{self.name}: {split_name} label {bad} is out of range "
                                f"0..{len(self.classes) - 1} ({len(self.classes)} classes)")
        if self.train.images.shape[2:] != self.test.images.shape[2:]:
            raise UserError(f"{self.name}: train images are {self.train.images.shape[2]}px but test images "
                            f"are {self.test.images.shape[2]}px (must match)")
        if self.mean is None or self.std is None:
            self.mean, self.std = channel_stats(self.train.images)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    @property
    def image_size(self) -> int:
        """The network's input side: ``crop_size``, else the stored side."""
        return int(self.crop_size or self.train.images.shape[2])

    @property
    def stored_size(self) -> int:
        return int(self.train.images.shape[2])



def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 NCHW square images to ``size`` x ``size`` (bilinear, antialiased when shrinking)."""
    if size <= 0:
        raise UserError(f"image_size: expected a positive integer, got {size}")
    if images.shape[2] == size and images.shape[3] == size:
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8, device=images.device)
    for i in range(0, images.shape[0], _STATS_CHUNK):
        c = images[i:i + _STATS_CHUNK].to(torch.float32)
        r = F.interpolate(c, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i:i + _STATS_CHUNK] = r.round_().clamp_(0, 255).to(torch.uint8)
    return out


def from_numpy_nhwc(x, y, where: str) -> Split:  # noqa: ANN001 - numpy arrays
    """Build a ``Split`` from a uint8 NHWC (or NHW / NHWC with C=1, replicated to RGB) numpy array."""
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
        got = x.dtype if isinstance(x, np.ndarray) else type(x).__name__
        raise UserError(f"{where}: expected uint8 images, got {got}")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[3] not in (1, 3):
        raise UserError(f"{where}: expected images shaped NHWC with C=1 or 3 (or NHW), got {x.shape}")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)):
        raise UserError(f"{where}: expected integer labels shaped (N,), got {y.dtype} {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise UserError(f"{where}: {y.shape[0]} labels for {x.shape[0]} images (lengths must match)")
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    try:
        return Split(t.contiguous(), torch.from_numpy(y.astype(np.int64)))
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def dataset_info(ds: ImageDataset, spec: str) -> dict[str, Any]:
    """The ``simxir data info --json`` object."""
    def counts(labels: Any) -> list[int]:
        if not ds.labelled:
            return []
        return [int(c) for c in labels.bincount(minlength=ds.num_classes).tolist()]

    return {
        "spec": spec,
        "name": ds.name,
        "train_size": len(ds.train),
        "test_size": len(ds.test),
        "image_size": ds.image_size,
        "stored_size": ds.stored_size,
        "labelled": ds.labelled,
        "num_classes": ds.num_classes,
        "classes": list(ds.classes),
        "mean": list(ds.mean),
        "std": list(ds.std),
        "train_class_counts": counts(ds.train.labels),
        "test_class_counts": counts(ds.test.labels),
    }
