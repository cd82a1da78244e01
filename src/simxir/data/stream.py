"""Streamed image folders: nothing is decoded up front; DataLoader workers decode each sample from
its file when a batch needs it (``simxir.data.crops``).

``StreamedDataset`` stands beside the in-memory ``ImageDataset`` with the same attributes
(``train``/``test`` of ``len`` N, ``classes``, ``mean``, ``std``, ``image_size``), but its splits are
:class:`~simxir.data.index.FolderSplit` indexes. Its mean/std are estimated from a fixed sample of
train images (``LoaderConfig.stats_sample``, evenly spaced in the index) under the evaluation
transform, never from the whole split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from simxir.data.crops import eval_view, train_views, view_rng
from simxir.data.dataset import Classes, channel_stats
from simxir.data.index import FolderSplit
from simxir.errors import UserError
from simxir.progress import progress

STREAM_IMAGE_SIZE = 224


@dataclass
class LoaderConfig:
    """How images reach the training step.

    ``stream``: ``on`` decodes folder images per batch in worker processes, ``off`` decodes the whole
    folder into memory first, ``auto`` streams when the decoded train split would exceed
    ``memory_fraction`` of the available host memory (or of the free accelerator memory when the
    in-memory data would be moved there). Only ``folder:`` data can stream.
    """

    stream: Literal["auto", "on", "off"] = "auto"
    workers: int | None = None        # None: default_workers() per process
    prefetch: int = 2                 # batches each worker prepares ahead
    memory_fraction: float = 0.25
    classes: str = ""                 # folder: a class-list file selecting a subset (ImageNet-100)
    skip_unreadable: bool = False     # skip (and count) files that do not decode instead of stopping
    stats_sample: int = 512           # train images the streamed mean/std are estimated from


MAX_WORKERS = 32   # beyond this a process's workers cost more start-up and memory than they decode


def default_workers() -> int:
    """Loader workers per process: the CPUs of this process (affinity) shared among the node's
    processes (``LOCAL_WORLD_SIZE``), one left for the training loop; 1 to ``MAX_WORKERS``
    (15 on a 16-core box with one GPU, 1 per process with 8 GPUs on 16 cores)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(MAX_WORKERS, cpus // local - 1))


def loader_workers(cfg: LoaderConfig) -> int:
    """``cfg.workers``, or :func:`default_workers` when it is None."""
    return default_workers() if cfg.workers is None else cfg.workers


def check_loader(cfg: LoaderConfig) -> None:
    if cfg.workers is not None and cfg.workers < 0:
        raise UserError(f"loader.workers: expected >= 0 (or null for the default), got {cfg.workers}")
    if cfg.prefetch < 1:
        raise UserError(f"loader.prefetch: expected >= 1, got {cfg.prefetch}")
    if not 0 < cfg.memory_fraction <= 1:
        raise UserError(f"loader.memory_fraction: expected a number in (0, 1], got {cfg.memory_fraction}")
    if cfg.stats_sample < 1:
        raise UserError(f"loader.stats_sample: expected >= 1, got {cfg.stats_sample}")


@dataclass
class StreamedDataset(Classes):
    name: str
    train: FolderSplit
    test: FolderSplit
    classes: list[str]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    loader: LoaderConfig
    streamed: bool = True


def _failure(path: Any, exc: BaseException) -> str:
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{path}: not a readable image ({type(exc).__name__}{': ' + text if text else ''})"


class _FileSamples(Dataset):
    """Base: reads sample ``i`` with ``_read(path, key)``; an unreadable file is either reported (the
    batch carries the message; the caller stops) or, with ``skip``, replaced by the next readable
    file in the index and reported for counting."""

    def __init__(self, split: FolderSplit, skip: bool) -> None:
        self.split, self.skip = split, skip

    def __len__(self) -> int:
        return len(self.split)

    def _read(self, path: Any, key: Any) -> torch.Tensor:
        raise NotImplementedError

    def _get(self, i: int, key: Any) -> tuple[torch.Tensor | None, int, list[str]]:
        bad: list[str] = []
        n = len(self.split)
        for k in range(min(n, 64)):
            j = (i + k) % n
            path = self.split.path(j)
            try:
                return self._read(path, key), int(self.split.labels[j]), bad
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken files
                bad.append(_failure(path, exc))
                if not self.skip:
                    return None, int(self.split.labels[j]), bad
        return None, int(self.split.labels[i]), bad


class TrainViews(_FileSamples):
    """Key ``(epoch, index)`` -> (one uint8 (3, s, s) crop + flip per spec, label, unreadable files)."""

    def __init__(self, split: FolderSplit, size: int, specs: Sequence[Any], seed: int, skip: bool) -> None:
        super().__init__(split, skip)
        self.size, self.specs, self.seed = size, tuple(specs), seed

    def _read(self, path: Any, key: Any) -> list[torch.Tensor]:
        epoch, index = key
        rngs = [view_rng(self.seed, epoch, index, v) for v in range(len(self.specs))]
        return train_views(path, rngs, self.size, self.specs)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor | None, int, list[str]]:
        return self._get(int(key[1]), key)


class EvalImages(_FileSamples):
    """Index -> (uint8 (3, S, S) Resize -> CenterCrop, label, unreadable files)."""

    def __init__(self, split: FolderSplit, size: int, skip: bool) -> None:
        super().__init__(split, skip)
        self.size = size

    def _read(self, path: Any, key: Any) -> torch.Tensor:
        return eval_view(path, self.size)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, int, list[str]]:
        return self._get(int(i), i)


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    out = None
    if get_worker_info() is not None:   # stack straight into shared memory, as default_collate does:
        x0 = tensors[0]                 # no second copy when the batch goes to the main process
        storage = x0._typed_storage()._new_shared(len(tensors) * x0.numel(), device=x0.device)
        out = x0.new(storage).resize_(len(tensors), *x0.shape)
    return torch.stack(tensors, out=out)


def collate(items: list[tuple[Any, int, list[str]]]) -> tuple[Any, torch.Tensor, list[str]]:
    """Stack a batch (samples of several views: one stacked tensor per view); a failed sample (no
    tensor) leaves the batch's images empty (0 rows)."""
    bad = [m for _, _, b in items for m in b]
    samples = [x for x, _, _ in items]
    if any(x is None for x in samples):
        return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.int64), bad
    images: Any = ([_stack([x[v] for x in samples]) for v in range(len(samples[0]))]
                   if isinstance(samples[0], list) else _stack(samples))
    return images, torch.tensor([y for _, y, _ in items], dtype=torch.int64), bad


def count_unreadable(bad: list[str], skip: bool, images: Any) -> int:
    """How many unreadable files a collated batch skipped; a UserError naming the first one when
    skipping is off, or when a sample found no readable file to stand in for it (empty batch)."""
    first = images[0] if isinstance(images, list) and images else images
    if bad and (not skip or not isinstance(first, torch.Tensor) or first.shape[0] == 0):
        raise UserError(f"{bad[0]}; set loader.skip_unreadable=true to skip unreadable files "
                        f"(each is counted in the run's log)")
    return len(bad)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def make_loader(dataset: Dataset, *, batch_sampler: Sampler | None = None, batch_size: int | None = None,
                workers: int = 0, prefetch: int = 2, pin: bool = False, persistent: bool = True) -> DataLoader:
    """A DataLoader over ``dataset`` with :func:`collate`; its own generator, so iterating it never
    draws from torch's global RNG (the augmentation's)."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(prefetch_factor=prefetch, persistent_workers=persistent, worker_init_fn=_worker_init)
    if batch_sampler is not None:
        kwargs["batch_sampler"] = batch_sampler
    else:
        kwargs.update(batch_size=batch_size, shuffle=False)
    return DataLoader(dataset, num_workers=workers, collate_fn=collate, pin_memory=pin,
                      generator=torch.Generator(), **kwargs)


def sample_indices(n: int, k: int) -> np.ndarray:
    """``min(n, k)`` indices evenly spaced over ``0..n-1`` (a fixed sample of a class-sorted index)."""
    k = min(n, k)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


class _Subset(Dataset):
    def __init__(self, base: Dataset, indices: np.ndarray) -> None:
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.base[int(self.indices[i])]


def decode_eval(split: FolderSplit, size: int, indices: np.ndarray | None = None, *, workers: int = 0,
                skip: bool = False, batch_size: int = 64, desc: str = "decode") -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-transformed uint8 images and labels of ``indices`` (default: all) of ``split``."""
    ds: Dataset = EvalImages(split, size, skip)
    if indices is not None:
        ds = _Subset(ds, indices)
    loader = make_loader(ds, batch_size=batch_size, workers=workers, persistent=False)
    xs, ys = [], []
    for x, y, bad in progress(loader, desc=desc, total=len(loader)):
        count_unreadable(bad, skip, x)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def streamed_folder(index: Any, name: str, image_size: int, loader: LoaderConfig) -> StreamedDataset:
    """A StreamedDataset over a folder index, its mean/std estimated from a fixed train sample."""
    size = image_size or STREAM_IMAGE_SIZE
    x, _ = decode_eval(index.train, size, sample_indices(len(index.train), loader.stats_sample),
                       workers=loader_workers(loader), skip=loader.skip_unreadable, desc="mean/std sample")
    mean, std = channel_stats(x)
    return StreamedDataset(name, index.train, index.test, index.classes, size, mean, std, loader)


def free_host_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else physical pages x page size."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def should_stream(cfg: LoaderConfig, n_images: int, side: int, device: torch.device | None = None,
                  on_device: bool = False) -> tuple[bool, str]:
    """``auto``'s rule and its reason: stream when ``n_images`` x 3 x side^2 bytes exceed
    ``memory_fraction`` of the available host memory, or of the free accelerator memory when the
    data would live there."""
    if cfg.stream != "auto":
        return cfg.stream == "on", f"loader.stream={cfg.stream}"
    need = n_images * 3 * side * side
    budget, where = free_host_bytes(), "available host memory"
    if on_device and device is not None and device.type == "cuda":
        free = int(torch.cuda.mem_get_info(device)[0])
        if free < budget:
            budget, where = free, f"free memory of {device}"
    stream = need > cfg.memory_fraction * budget
    verb = "exceeds" if stream else "fits in"
    return stream, (f"decoded train split {need / 2**30:.2f} GiB {verb} {cfg.memory_fraction:g} x "
                    f"{where} ({budget / 2**30:.1f} GiB)")
