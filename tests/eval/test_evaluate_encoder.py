"""evaluate_encoder on real datasets: equals kNN on independently computed features; beats chance."""

from __future__ import annotations

import pytest
from torch import nn

from simxir.eval import LinearProbeConfig, evaluate_encoder, knn_classify


class _Pixels(nn.Module):
    """A parameter-free 'encoder': the flattened normalized pixels."""

    def forward(self, x):
        return x.flatten(1)


def test_digits_pixels_result_matches_knn_on_direct_features():
    from simxir.augment import build_augment
    from simxir.data import load_dataset

    ds = load_dataset("digits")
    aug = build_augment("tiny", ds.image_size, ds.mean, ds.std)
    res = evaluate_encoder(_Pixels(), ds, aug, knn_ks=(5, 11), linear=True, batch_size=500,
                           linear_cfg=LinearProbeConfig(epochs=15))
    assert set(res) == {"knn", "knn_weighted", "linear"}
    tr = aug.eval(ds.train.images).flatten(1)
    te = aug.eval(ds.test.images).flatten(1)
    ref = knn_classify(tr, ds.train.labels, te, ds.test.labels, ks=(5, 11), show_progress=False)
    for kind in ref:
        for met in ref[kind]:
            for k in ref[kind][met]:
                assert res[kind][met][k] == pytest.approx(ref[kind][met][k], abs=100.0 / len(te) + 1e-9)
    assert res["knn"]["cosine"]["5"] > 90.0           # digits are easy for pixel kNN
    assert res["linear"]["top1"] > 85.0 and res["linear"]["top5"] >= res["linear"]["top1"]


@pytest.mark.shared
def test_cifar1k_pixel_knn_beats_chance(cifar1k):
    from simxir.augment import build_augment
    from simxir.data import load_dataset

    ds = load_dataset(f"npz:{cifar1k}")
    aug = build_augment("simsiam-cifar", ds.image_size, ds.mean, ds.std)
    res = evaluate_encoder(_Pixels(), ds, aug, knn_ks=(5, 21), linear=False)
    assert "linear" not in res
    chance = 100.0 / ds.num_classes
    assert res["knn"]["cosine"]["5"] > 1.5 * chance and res["knn"]["euclidean"]["5"] > 1.5 * chance
