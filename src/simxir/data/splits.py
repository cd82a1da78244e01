"""Stratified sub-sampling: ``split_validation`` (carve a validation split) and ``subset``."""

from __future__ import annotations

import torch

from simxir.data.dataset import ImageDataset, Split
from simxir.errors import UserError


def stratified_indices(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Pick ``n`` indices with per-class counts proportional to the class sizes, sorted ascending.

    Per-class quotas ``n * n_c / N`` are floored and the remaining picks go to the classes with
    the largest fractional parts (ties: lower class index). Within a class the picks are random
    (``torch.Generator`` seeded with ``seed``), so the same seed gives the same indices.
    """
    total = labels.numel()
    if not 0 <= n <= total:
        raise UserError(f"n: expected 0..{total}, got {n}")
    labels = labels.cpu()
    g = torch.Generator().manual_seed(int(seed))
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.to(torch.float64) * n / total
    take = quota.floor().to(torch.int64)
    rest = n - int(take.sum())
    if rest > 0:
        frac = quota - take.to(torch.float64)
        order = sorted(range(len(classes)), key=lambda i: (-float(frac[i]), i))
        for i in order[:rest]:
            take[i] += 1
    picked = []
    for c, k in zip(classes.tolist(), take.tolist()):
        idx = torch.nonzero(labels == c, as_tuple=True)[0]
        picked.append(idx[torch.randperm(idx.numel(), generator=g)[:k]])
    return torch.cat(picked).sort().values if picked else torch.empty(0, dtype=torch.int64)


def _take(split: Split, idx: torch.Tensor) -> Split:
    idx = idx.to(split.images.device)
    return Split(split.images[idx], split.labels[idx.to(split.labels.device)])


def split_validation(ds: ImageDataset, fraction: float, seed: int) -> ImageDataset:
    """Hold out a stratified ``fraction`` of train as the new test split (train keeps the rest).

    The validation size is ``round(fraction * len(train))``; mean/std are recomputed on the new train.
    """
    if not 0.0 < fraction < 1.0:
        raise UserError(f"fraction: expected a value strictly between 0 and 1, got {fraction}")
    n = len(ds.train)
    n_val = int(round(fraction * n))
    if n_val < 1 or n_val > n - 1:
        raise UserError(f"fraction: {fraction} of {n} train images leaves an empty train or validation split")
    val_idx = stratified_indices(ds.train.labels, n_val, seed)
    keep = torch.ones(n, dtype=torch.bool)
    keep[val_idx] = False
    train_idx = torch.nonzero(keep, as_tuple=True)[0]
    return ImageDataset(ds.name, _take(ds.train, train_idx), _take(ds.train, val_idx), list(ds.classes),
                        crop_size=ds.crop_size)


def subset(ds: ImageDataset, n_train: int | None, n_test: int | None, seed: int = 0) -> ImageDataset:
    """Keep ``n_train`` train and ``n_test`` test images (``None``: all), stratified by class.

    Asking for more images than a split holds is an error. mean/std are recomputed on the kept train.
    """
    def pick(split: Split, n: int | None, arg: str, s: int) -> Split:
        if n is None or n == len(split):
            return split
        if not 1 <= n <= len(split):
            raise UserError(f"{arg}: expected 1..{len(split)} (the split's size), got {n}")
        return _take(split, stratified_indices(split.labels, n, s))

    if n_train is None and n_test is None:
        return ds
    train = pick(ds.train, n_train, "n_train", seed)
    test = pick(ds.test, n_test, "n_test", seed + 1)
    return ImageDataset(ds.name, train, test, list(ds.classes), crop_size=ds.crop_size)
