"""Where the training step's views come from: the one interface the engine uses for in-memory and
streamed data.

Both sources walk the same global ``(seed, epoch)`` permutation: step ``i`` takes the global batch
``perm[i*B:(i+1)*B]`` and rank ``r`` its ``r``-th slice (DistributedSampler semantics), split into
``accumulate`` micro-batches. ``steps(epoch)`` yields, per step, an iterator of this process's
micro-batches ``(views, y)`` on the device: one view per spec of the augmentation (two for most
methods, global then local crops with multi-crop).

- :class:`MemorySource`: the uint8 train set in memory (on the device by default); each micro-batch
  is indexed and augmented on the device (``augment.views``).
- :class:`StreamSource`: DataLoader workers decode each sample of this rank's slice from its file
  once and return its uint8 RandomResizedCrop + flip views (one per spec, each at its size),
  reproducible from (seed, epoch, global sample index, view); the device then runs the rest of
  each view (``augment.finish_views``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import Sampler

from simxir.data.stream import (
    StreamedDataset,
    TrainViews,
    count_unreadable,
    decode_eval,
    loader_workers,
    make_loader,
    sample_indices,
)
from simxir.progress import log
from simxir.train.plan import Plan, epoch_seed

MicroBatch = tuple[list[torch.Tensor], torch.Tensor]


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The epoch's global shuffle, identical on every rank."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(epoch_seed(seed, epoch, 0)))


def rank_indices(perm: torch.Tensor, step: int, plan: Plan) -> torch.Tensor:
    """This rank's slice of global batch ``step``."""
    b = plan.cfg.batch_size
    return perm[step * b:(step + 1) * b][plan.rank * plan.local_batch:(plan.rank + 1) * plan.local_batch]


def micro_slices(idx: torch.Tensor, plan: Plan) -> Iterator[torch.Tensor]:
    """A step's rank slice split into its ``accumulate`` micro-batches."""
    for a in range(plan.cfg.accumulate):
        yield idx[a * plan.micro:(a + 1) * plan.micro]


def _channels_last(views: list[torch.Tensor], on: bool) -> list[torch.Tensor]:
    return [v.contiguous(memory_format=torch.channels_last) for v in views] if on else views


def seed_augment(augment: Any, plan: Plan, epoch: int) -> bool:
    """Give the augmentation its own generator on the device, seeded from ``(seed, epoch)`` alike
    on every rank (each rank then draws the parameters of the whole global micro-batch and keeps
    its rows: :func:`draw_rows`). Augments without ``seed`` draw from torch's generator, which the
    engine seeds from ``(seed, epoch, rank)``; returns whether the augment has its own."""
    if not hasattr(augment, "seed"):
        return False
    augment.seed(epoch_seed(plan.cfg.seed, epoch, 1), plan.device)
    return True


def draw_rows(plan: Plan) -> tuple[int, int]:
    """(images the augmentation draws for, this rank's offset): the micro-batch of all ranks."""
    return plan.micro * plan.world, plan.micro * plan.rank


class MemorySource:
    """In-memory uint8 images, indexed and augmented on the device."""

    streamed = False

    def __init__(self, dataset: Any, plan: Plan, augment: Any) -> None:
        self.plan, self.augment = plan, augment
        self._rows: tuple[int, int] | None = None
        self.images, self.labels = dataset.train.images, dataset.train.labels
        if plan.cfg.data_on_device:
            self.images, self.labels = self.images.to(plan.device), self.labels.to(plan.device)
        self.test_x, self.test_y = dataset.test.images, dataset.test.labels
        if self.test_x.shape[0] == 0:
            self.test_x, self.test_y = dataset.train.images[:plan.cfg.monitor.eval_size], dataset.train.labels[:0]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def steps(self, epoch: int) -> Iterator[Iterator[MicroBatch]]:
        self._rows = draw_rows(self.plan) if seed_augment(self.augment, self.plan, epoch) else None
        # one copy of the permutation per epoch, so that steps index on the device without one
        perm = epoch_permutation(self.plan.cfg.seed, epoch, len(self)).to(self.images.device)
        for i in range(self.plan.steps_per_epoch):
            yield self._micro_batches(rank_indices(perm, i, self.plan))

    def _micro_batches(self, idx: torch.Tensor) -> Iterator[MicroBatch]:
        plan = self.plan
        for j in micro_slices(idx, plan):
            x = self.images[j].to(plan.device, non_blocking=True)
            y = self.labels[j].to(plan.device, non_blocking=True)
            views = self.augment.views(x) if self._rows is None else self.augment.views(x, rows=self._rows)
            yield _channels_last(views, plan.channels_last), y

    def monitor_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed un-augmented images of the epoch-end monitors (the first ``eval_size`` used)."""
        return self.test_x, self.test_y

    def epoch_stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass


class RankBatches(Sampler):
    """This rank's micro-batches of epoch ``self.epoch``, as lists of ``(epoch, global index)``."""

    def __init__(self, n: int, plan: Plan) -> None:
        self.n, self.plan, self.epoch = n, plan, 0

    def __len__(self) -> int:
        return self.plan.steps_per_epoch * self.plan.cfg.accumulate

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        plan, epoch = self.plan, self.epoch
        perm = epoch_permutation(plan.cfg.seed, epoch, self.n)
        for i in range(plan.steps_per_epoch):
            for micro in micro_slices(rank_indices(perm, i, plan), plan):
                yield [(epoch, j) for j in micro.tolist()]


class StreamSource:
    """Streamed folder images: crops decoded by DataLoader workers, the rest on the device."""

    streamed = True

    def __init__(self, dataset: StreamedDataset, plan: Plan, augment: Any) -> None:
        self.plan, self.augment, self.dataset = plan, augment, dataset
        cfg = dataset.loader
        self.workers = loader_workers(cfg)
        self.skip = cfg.skip_unreadable
        self.sampler = RankBatches(len(dataset.train), plan)
        views = TrainViews(dataset.train, dataset.image_size, augment.specs, plan.cfg.seed, self.skip)
        self.loader = make_loader(views, batch_sampler=self.sampler, workers=self.workers,
                                  prefetch=cfg.prefetch, pin=plan.device.type == "cuda")
        self._wait = 0.0
        self._skipped: list[str] = []
        self._monitor: tuple[torch.Tensor, torch.Tensor] | None = None
        self._rows: tuple[int, int] | None = None
        log(f"streaming {len(dataset.train)} train images from {dataset.train.root}: {self.workers} loader "
            f"workers per process, {dataset.image_size}px crops")

    def __len__(self) -> int:
        return len(self.dataset.train)

    def steps(self, epoch: int) -> Iterator[Iterator[MicroBatch]]:
        self.sampler.epoch = epoch
        self._rows = draw_rows(self.plan) if seed_augment(self.augment, self.plan, epoch) else None
        self._wait, self._skipped = 0.0, []
        it = iter(self.loader)
        for _ in range(self.plan.steps_per_epoch):
            yield self._micro_batches(it)

    def _micro_batches(self, it: Iterator[Any]) -> Iterator[MicroBatch]:
        plan = self.plan
        for _ in range(plan.cfg.accumulate):
            t = time.perf_counter()
            crops, y, bad = next(it)
            self._wait += time.perf_counter() - t
            if count_unreadable(bad, self.skip, crops):
                self._skipped.extend(bad)
            crops = [c.to(plan.device, non_blocking=True) for c in crops]
            y = y.to(plan.device, non_blocking=True)
            views = (self.augment.finish_views(crops) if self._rows is None
                     else self.augment.finish_views(crops, rows=self._rows))
            yield _channels_last(views, plan.channels_last), y

    def monitor_set(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``eval_size`` validation images evenly spaced in the index, decoded once (eval transform);
        without a validation split, train images with no labels (as :class:`MemorySource`)."""
        if self._monitor is None:
            ds = self.dataset
            split = ds.test if len(ds.test) else ds.train   # unlabelled: train images, no labels
            x, y = decode_eval(split, ds.image_size, sample_indices(len(split), self.plan.cfg.monitor.eval_size),
                               workers=self.workers, skip=self.skip, desc="monitor images")
            self._monitor = (x, y if len(ds.test) else y[:0])
        return self._monitor

    def epoch_stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"data_wait_s": self._wait}
        if self.skip:
            out["skipped_unreadable"] = len(self._skipped)
            for msg in self._skipped[:5]:
                log(f"skipped {msg}")
        return out

    def close(self) -> None:
        it = getattr(self.loader, "_iterator", None)
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


def make_source(dataset: Any, plan: Plan, augment: Any) -> MemorySource | StreamSource:
    return StreamSource(dataset, plan, augment) if getattr(dataset, "streamed", False) else MemorySource(
        dataset, plan, augment)
