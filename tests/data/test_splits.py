"""Stratified validation carving and sub-sampling."""

from __future__ import annotations

import pytest
import torch

from simxir.data import ImageDataset, Split, split_validation, stratified_indices, subset
from simxir.errors import UserError


def _ds(counts=(40, 30, 20, 10), n_test: int = 25) -> ImageDataset:
    labels = torch.cat([torch.full((c,), i) for i, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))]
    n = len(labels)
    x = torch.arange(n, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 2, 2)
    # make each image unique via a second pixel holding n // 256
    x = x.clone()
    x[:, :, 1, 1] = (torch.arange(n) // 256).to(torch.uint8)[:, None]
    test = Split(torch.zeros(n_test, 3, 2, 2, dtype=torch.uint8), torch.arange(n_test) % len(counts))
    return ImageDataset("t", Split(x, labels), test, [str(i) for i in range(len(counts))])


def _ids(split: Split) -> list[int]:
    return (split.images[:, 0, 0, 0].long() + 256 * split.images[:, 0, 1, 1].long()).tolist()


def test_split_validation_stratified_disjoint_and_complete() -> None:
    ds = _ds()
    v = split_validation(ds, 0.2, seed=3)
    assert len(v.test) == 20 and len(v.train) == 80
    assert v.test.labels.bincount(minlength=4).tolist() == [8, 6, 4, 2]
    tr, va = set(_ids(v.train)), set(_ids(v.test))
    assert not tr & va and tr | va == set(range(100))
    # labels travel with their images
    orig = dict(zip(_ids(ds.train), ds.train.labels.tolist()))
    assert all(orig[i] == lab for i, lab in zip(_ids(v.test), v.test.labels.tolist()))
    assert v.mean == pytest.approx(tuple(v.train.images[:, c].double().mean().item() / 255 for c in range(3)))
    assert torch.equal(split_validation(ds, 0.2, seed=3).test.images, v.test.images)
    assert not torch.equal(split_validation(ds, 0.2, seed=4).test.images, v.test.images)


def test_largest_remainder_allocation() -> None:
    labels = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)
    # n=5: quotas 2.5, 1.5, 1.0 -> floors 2, 1, 1 and one extra to the tie-first class 0
    idx = stratified_indices(labels, 5, seed=0)
    assert labels[idx].bincount(minlength=3).tolist() == [3, 1, 1]
    assert idx.tolist() == sorted(set(idx.tolist()))
    assert len(stratified_indices(labels, 10, seed=0)) == 10


def test_subset() -> None:
    ds = _ds()
    s = subset(ds, 10, 5, seed=1)
    assert s.train.labels.bincount(minlength=4).tolist() == [4, 3, 2, 1]
    assert len(s.test) == 5 and set(_ids(s.train)) <= set(range(100))
    assert subset(ds, None, None) is ds
    assert len(subset(ds, None, 8).train) == 100
    for args, msg in (((101, None), "n_train"), ((None, 0), "n_test"), ((-1, None), "n_train")):
        with pytest.raises(UserError, match=msg):
            subset(ds, *args)
    for frac in (0.0, 1.0, 0.001, -0.5):
        with pytest.raises(UserError, match="fraction"):
            split_validation(ds, frac, 0)
