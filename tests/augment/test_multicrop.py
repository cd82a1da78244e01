"""Multi-crop views: the specs a recipe and a ``multicrop`` section give, their sizes on both data
paths, and their crop boxes against torchvision's RandomResizedCrop at the global and local scales."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from simxir.augment import MultiCropConfig, build_augment, local_size_for, params, view_specs
from simxir.data.crops import sample_box, view_rng
from simxir.errors import UserError

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_two_global_crops_and_no_local_ones_are_the_recipe_itself():
    for recipe in ("simsiam-cifar", "byol-imagenet", "tiny", "dino"):
        assert view_specs(recipe, 32) == view_specs(recipe, 32, MultiCropConfig())
        assert build_augment(recipe, 32, MEAN, STD).specs == view_specs(recipe, 32)


def test_dinos_views_are_its_data_augmentation():
    """main_dino.py's DataAugmentationDINO: global 1 blur p 1, global 2 blur p 0.1 + solarize p 0.2,
    local crops blur p 0.5 at 96 px; jitter 0.4/0.4/0.2/0.1 at p 0.8, grayscale 0.2, flips."""
    specs = view_specs("dino", 224, MultiCropConfig(local_crops=8, global_scale=(0.4, 1.0)))
    g1, g2, *local = specs
    assert len(local) == 8 and local_size_for(224) == 96 and local_size_for(32) == 16
    assert (g1.blur_p, g1.solarize_p, g2.blur_p, g2.solarize_p) == (1.0, 0.0, 0.1, 0.2)
    assert all(v.scale == (0.4, 1.0) and v.size == 0 for v in (g1, g2))
    assert all(v.scale == (0.05, 0.4) and v.size == 96 and v.blur_p == 0.5 and v.solarize_p == 0.0 for v in local)
    assert all(v.jitter == (0.4, 0.4, 0.2, 0.1) and v.jitter_p == 0.8 and v.gray_p == 0.2 and v.flip_p == 0.5
               for v in specs)
    three = view_specs("simsiam-cifar", 32, MultiCropConfig(global_crops=3, local_crops=1, local_scale=(0.1, 0.3)))
    assert three[2] == three[0] and three[3].scale == (0.1, 0.3) and three[3].size == 16


@pytest.mark.parametrize("bad,match", [
    ({"global_crops": 0}, "global_crops"), ({"local_crops": -1}, "local_crops"),
    ({"local_crops": 2, "local_scale": (0.5, 0.2)}, "local_scale"), ({"global_scale": (0.0, 1.0)}, "global_scale"),
    ({"local_size": 1.5}, "local_size")])
def test_bad_multicrop_settings_are_one_line(bad, match):
    with pytest.raises(UserError, match=f"multicrop.{match}"):
        view_specs("dino", 32, MultiCropConfig(**bad))


def test_views_have_their_sizes_in_memory():
    aug = build_augment("dino", 32, MEAN, STD, multicrop=MultiCropConfig(local_crops=3))
    x = torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)
    views = aug.views(x)
    assert [tuple(v.shape) for v in views] == [(5, 3, 32, 32)] * 2 + [(5, 3, 16, 16)] * 3
    assert all(torch.isfinite(v).all() for v in views)
    crops = [torch.randint(0, 256, (5, 3, s, s), dtype=torch.uint8) for s in (32, 32, 16, 16, 16)]
    assert [tuple(v.shape) for v in aug.finish_views(crops)] == [(5, 3, 32, 32)] * 2 + [(5, 3, 16, 16)] * 3
    with pytest.raises(UserError, match="expected 16x16"):
        aug.finish_views(crops[:2] + [torch.zeros(5, 3, 32, 32, dtype=torch.uint8)] * 3)


def _torchvision_boxes(n: int, height: int, width: int, scale, ratio, seed: int = 0) -> np.ndarray:
    """torchvision.transforms.RandomResizedCrop.get_params, written out with Python's random."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        area = height * width
        for _ in range(10):
            target = area * rng.uniform(*scale)
            aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
            w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                out.append((rng.randint(0, height - h), rng.randint(0, width - w), h, w))
                break
        else:
            out.append((0, 0, height, width))   # the fallback: the whole image (its aspect lies in ratio here)
    return np.array(out, dtype=float)


@pytest.mark.parametrize("which", ["global", "local"])
def test_crop_area_and_aspect_follow_torchvision_at_each_scale(which):
    """Kolmogorov-Smirnov, 4000 boxes each, on a 375 x 500 image: the in-memory sampler
    (``params.crop_boxes``) and the streamed one (``crops.sample_box``) against torchvision's algorithm
    at DINO's global (0.4-1) and local (0.05-0.4) scales; the other scale is told apart."""
    from scipy.stats import ks_2samp

    g, loc = view_specs("dino", 224, MultiCropConfig(local_crops=1))[::2]
    spec, other = (g, loc) if which == "global" else (loc, g)
    h, w, n = 375, 500, 4000
    ref = _torchvision_boxes(n, h, w, spec.scale, spec.ratio)
    memory = params.crop_boxes(n, h, w, spec.scale, spec.ratio, generator=torch.Generator().manual_seed(0)).double()
    memory = memory.numpy()
    streamed = np.array([sample_box(view_rng(0, 0, i, 2), h, w, spec.scale, spec.ratio) for i in range(n)], dtype=float)
    wrong = _torchvision_boxes(n, h, w, other.scale, other.ratio, seed=1)
    area = lambda b: b[:, 2] * b[:, 3] / (h * w)  # noqa: E731
    aspect = lambda b: b[:, 3] / b[:, 2]  # noqa: E731
    for name, ours in (("memory", memory), ("streamed", streamed)):
        assert ks_2samp(area(ref), area(ours)).pvalue > 1e-3, name
        assert ks_2samp(aspect(ref), aspect(ours)).pvalue > 1e-3, name
        assert ks_2samp(area(wrong), area(ours)).pvalue < 1e-6, name     # the test can tell the scales apart
