"""simxir.augment: formulas checked against independent references written out here."""

from __future__ import annotations

import colorsys
import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from simxir.augment import RECIPES, Augment, ViewSpec, blur_kernel_size, build_augment, ops, params
from simxir.errors import UserError

MEAN = (0.49, 0.48, 0.45)
STD = (0.25, 0.24, 0.26)
PLAIN = ViewSpec(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0)


def images(n: int = 8, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


def normalized(x: torch.Tensor) -> torch.Tensor:
    """(x/255 - mean)/std, written out independently of the library."""
    m = torch.tensor(MEAN).view(1, 3, 1, 1)
    s = torch.tensor(STD).view(1, 3, 1, 1)
    return (x.double() / 255 - m) / s


def unnormalize(v: torch.Tensor) -> torch.Tensor:
    return v.double() * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)


def aug_with(v1: ViewSpec, v2: ViewSpec | None = None, size: int = 16) -> Augment:
    return Augment("test", size, MEAN, STD, [v1, v2 or v1])


# ---------------------------------------------------------------- pipeline: exact behaviours

def test_identity_crop_reproduces_normalized_input():
    x = images()
    v = aug_with(PLAIN).view(x, PLAIN)
    assert v.dtype == torch.float32 and v.device == x.device
    torch.testing.assert_close(v.double(), normalized(x), atol=1e-5, rtol=0)


def test_eval_is_normalization_and_deterministic():
    x = images()
    a = build_augment("simsiam-cifar", 16, MEAN, STD)
    torch.manual_seed(1)
    e1 = a.eval(x)
    e2 = a.eval(x)
    assert e1.dtype == torch.float32
    torch.testing.assert_close(e1.double(), normalized(x), atol=1e-6, rtol=0)
    assert torch.equal(e1, e2)


def test_eval_centre_crops_non_square_and_resizes():
    x = images(2, 16)
    wide = torch.cat([x, x, x], dim=3)[:, :, :, :40]  # 16 x 40
    a = build_augment("tiny", 16, MEAN, STD)
    torch.testing.assert_close(a.eval(wide).double(), normalized(wide[:, :, :, 12:28]), atol=1e-6, rtol=0)
    const = torch.full((2, 3, 40, 40), 77, dtype=torch.uint8)
    out = a.eval(const)
    assert out.shape == (2, 3, 16, 16)
    torch.testing.assert_close(out.double(), normalized(const[:, :, :16, :16]), atol=1e-5, rtol=0)


def test_flip_mirrors_horizontally():
    x = images()
    spec = replace(PLAIN, flip_p=1.0)
    v = aug_with(spec).view(x, spec)
    torch.testing.assert_close(v.double(), normalized(x.flip(3)), atol=1e-5, rtol=0)


def test_grayscale_has_equal_channels_equal_to_luma():
    x = images()
    spec = replace(PLAIN, gray_p=1.0)
    g = unnormalize(aug_with(spec).view(x, spec))
    xf = x.double() / 255
    luma = 0.299 * xf[:, 0] + 0.587 * xf[:, 1] + 0.114 * xf[:, 2]
    for c in range(3):
        torch.testing.assert_close(g[:, c], luma, atol=1e-5, rtol=0)


def test_same_seed_same_views_different_seed_differs():
    x = images(16, 16)
    for recipe in RECIPES:
        a = build_augment(recipe, 16, MEAN, STD)
        torch.manual_seed(3)
        v1, v2 = a.views(x)
        torch.manual_seed(3)
        w1, w2 = a.views(x)
        torch.manual_seed(4)
        u1, _ = a.views(x)
        assert torch.equal(v1, w1) and torch.equal(v2, w2), recipe
        assert not torch.equal(v1, u1), recipe
        assert not torch.equal(v1, v2), recipe
        assert v1.shape == v2.shape == (16, 3, 16, 16) and v1.dtype == torch.float32


def test_output_size_follows_image_size_not_input():
    x = images(4, 24)
    a = build_augment("byol-imagenet", 20, MEAN, STD)
    v1, v2 = a.views(x)
    assert v1.shape == v2.shape == (4, 3, 20, 20)
    assert a.eval(x).shape == (4, 3, 20, 20)


def test_per_sample_parameters_differ_within_batch():
    x = images(1, 16).expand(32, -1, -1, -1).contiguous()  # one image repeated
    v, _ = build_augment("simsiam-cifar", 16, MEAN, STD).views(x)
    distinct = {tuple(row.flatten()[:20].tolist()) for row in v}
    assert len(distinct) > 28


def test_sync_free_path_equals_the_cpu_path():
    """The GPU code path (every pass on the whole batch, selections by ``where``, no host reads)
    gives the CPU path's views for the same draws; checked on the CPU for every recipe."""
    x = images(24, 16)
    for recipe in RECIPES:
        a = build_augment(recipe, 16, MEAN, STD)
        out = []
        for sync_free in (False, True):
            a.sync_free = sync_free
            a.seed(11, "cpu")
            out.append(a.views(x))
        for u, v in zip(*out):
            torch.testing.assert_close(u, v, atol=1e-6, rtol=0, msg=recipe)


def test_a_share_of_the_batch_gets_the_rows_of_the_whole_batchs_draws():
    """rows=(total, offset): what one process of a distributed run draws for its share equals the
    single process's views of those images (same seed), for every recipe and in finish()."""
    x = images(12, 16)
    for recipe in RECIPES:
        a = build_augment(recipe, 16, MEAN, STD)
        a.seed(2, "cpu")
        whole = a.views(x)
        for lo, hi in ((0, 6), (6, 12)):
            a.seed(2, "cpu")
            part = a.views(x[lo:hi], rows=(12, lo))
            for w, p in zip(whole, part):
                torch.testing.assert_close(p, w[lo:hi], atol=1e-6, rtol=0, msg=recipe)
    crops = images(8, 16)
    a.seed(4, "cpu")
    whole = a.finish_views([crops, crops])
    a.seed(4, "cpu")
    part = a.finish_views([crops[4:], crops[4:]], rows=(8, 4))
    torch.testing.assert_close(part[1], whole[1][4:], atol=1e-6, rtol=0)
    with pytest.raises(UserError, match="rows"):
        a.views(x, rows=(12, 6))


def test_own_generator_is_reproducible_and_leaves_torchs_alone():
    x = images(16, 16)
    a = build_augment("byol-imagenet", 16, MEAN, STD)
    torch.manual_seed(5)
    ref = a.views(x)            # torch's generator, seeded like the own one below
    state = torch.get_rng_state()
    a.seed(5, "cpu")
    own = a.views(x)
    assert torch.equal(torch.get_rng_state(), state)   # the global generator was not drawn from
    for u, v in zip(ref, own):   # a CPU generator seeded alike draws the same numbers
        assert torch.equal(u, v)
    a.seed(6, "cpu")
    assert not torch.equal(a.views(x)[0], own[0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_views_are_drawn_on_the_device_and_reproducible():
    x = images(8, 16).cuda()
    a = build_augment("byol-imagenet", 16, MEAN, STD)
    a.seed(5, x.device)
    g1, g2 = a.views(x)
    a.seed(5, x.device)
    h1, h2 = a.views(x)
    assert g1.device.type == "cuda" and a.generator.device.type == "cuda"
    assert torch.equal(g1, h1) and torch.equal(g2, h2)


def test_cpu_threads_setting_restored_and_results_unchanged():
    x = images(8, 16)
    before = torch.get_num_threads()
    out = []
    for threads in (None, 1, 2):
        a = build_augment("byol-imagenet", 16, MEAN, STD, cpu_threads=threads)
        torch.manual_seed(9)
        out.append(a.views(x))
        assert torch.get_num_threads() == before
    for v1, v2 in out[1:]:
        torch.testing.assert_close(v1, out[0][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(v2, out[0][1], atol=1e-5, rtol=0)


# ---------------------------------------------------------------- pipeline: statistics

def _tol(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-9


def test_grayscale_fraction_near_p():
    n = 2000
    torch.manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 4, 4), dtype=torch.uint8)
    v, _ = build_augment("simsiam-cifar", 4, MEAN, STD).views(x)
    u = unnormalize(v)
    is_gray = ((u[:, 0] - u[:, 1]).abs().amax((1, 2)) < 1e-5) & ((u[:, 1] - u[:, 2]).abs().amax((1, 2)) < 1e-5)
    frac = is_gray.double().mean().item()
    assert abs(frac - 0.2) < _tol(0.2, n)


def test_byol_views_are_asymmetric_in_solarize():
    n = 3000
    a = build_augment("byol-imagenet", 8, MEAN, STD)
    v1, v2 = (replace(s, jitter_p=0.0, gray_p=0.0) for s in a.specs)
    a = aug_with(v1, v2, size=8)
    x = torch.full((n, 3, 8, 8), 200, dtype=torch.uint8)  # constant: crop/flip/blur keep it
    torch.manual_seed(0)
    o1, o2 = (unnormalize(v)[:, 0, 0, 0] for v in a.views(x))
    assert torch.allclose(o1, torch.full_like(o1, 200 / 255), atol=1e-5)  # p = 0 for view 1
    sol = (o2 - 55 / 255).abs() < 1e-5
    assert bool((((o2 - 200 / 255).abs() < 1e-5) | sol).all())
    assert abs(sol.double().mean().item() - 0.2) < _tol(0.2, n)


def test_byol_views_are_asymmetric_in_blur():
    n = 2000
    a = build_augment("byol-imagenet", 8, MEAN, STD)
    # Isolate blur; sigma >= 1 so every blurred sample visibly loses contrast.
    v1, v2 = (replace(s, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, gray_p=0.0,
                      solarize_p=0.0, blur_sigma=(1.0, 2.0)) for s in a.specs)
    assert (v1.blur_p, v2.blur_p) == (1.0, 0.1)  # the recipe's values, checked below in effect
    yy, xx = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    board = ((yy + xx) % 2 * 255).to(torch.uint8)
    x = board.expand(n, 3, 8, 8).contiguous()
    torch.manual_seed(0)
    o1, o2 = (unnormalize(v).std(dim=(1, 2, 3)) for v in aug_with(v1, v2, size=8).views(x))
    sharp = (x.double() / 255).std(dim=(1, 2, 3))
    assert bool((o1 < 0.5 * sharp).all())
    blurred2 = o2 < 0.5 * sharp
    assert bool((blurred2 | ((o2 - sharp).abs() < 1e-5)).all())
    assert abs(blurred2.double().mean().item() - 0.1) < _tol(0.1, n)


# ---------------------------------------------------------------- ops against references

def test_resized_crop_matches_interpolate_on_slices():
    x = torch.rand(5, 3, 12, 10)
    boxes = torch.tensor([[0, 0, 12, 10], [2, 1, 5, 7], [3, 4, 9, 6], [0, 5, 4, 5], [7, 2, 5, 3]])
    flip = torch.tensor([False, True, False, True, False])
    out = ops.resized_crop(x, boxes, 8, flip)
    for i, (t, left, h, w) in enumerate(boxes.tolist()):
        ref = F.interpolate(x[i:i + 1, :, t:t + h, left:left + w], size=(8, 8), mode="bilinear", align_corners=False)
        if flip[i]:
            ref = ref.flip(3)
        torch.testing.assert_close(out[i:i + 1], ref, atol=1e-5, rtol=0)


def test_crop_boxes_follow_torchvision_sampling():
    torch.manual_seed(0)
    n, h, w = 5000, 32, 32
    b = params.crop_boxes(n, h, w, (0.2, 1.0), (3 / 4, 4 / 3))
    top, left, bh, bw = b.T
    assert bool(((top >= 0) & (left >= 0) & (top + bh <= h) & (left + bw <= w) & (bh > 0) & (bw > 0)).all())
    area = bh * bw / (h * w)
    assert area.min() > 0.2 - 0.05 and area.max() <= 1.0
    aspect = bw / bh
    assert aspect.min() > 0.75 * 0.85 and aspect.max() < 4 / 3 / 0.85
    # Same area distribution as torchvision's get_params, written out per sample with `random`.
    rng = random.Random(0)
    ref = []
    for _ in range(n):
        for _ in range(10):
            ta = h * w * rng.uniform(0.2, 1.0)
            ar = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(ta * ar)), round(math.sqrt(ta / ar))
            if 0 < cw <= w and 0 < ch <= h:
                ref.append(cw * ch / (h * w))
                break
        else:
            ref.append(1.0)
    ref_t = torch.tensor(ref)
    assert abs(area.mean().item() - ref_t.mean().item()) < 5 * ref_t.std().item() / math.sqrt(n / 2)
    for q in (0.1, 0.5, 0.9):
        assert abs(area.quantile(q).item() - ref_t.quantile(q).item()) < 0.03
    # Positions cover the whole valid range.
    assert top.min() == 0 and (top + bh).max() == h


def test_crop_boxes_fallback_is_central():
    torch.manual_seed(0)
    b = params.crop_boxes(4, 20, 20, (0.9, 1.0), (10.0, 20.0))  # never fits: too wide
    # torchvision: in_ratio 1 < min(ratio) -> w = W, h = round(W / min(ratio)) = 2, centred.
    assert b.tolist() == [[9.0, 0.0, 2.0, 20.0]] * 4


def _hue_ref(img: np.ndarray, shift: float) -> np.ndarray:
    out = np.empty_like(img)
    for y in range(img.shape[1]):
        for x in range(img.shape[2]):
            h, s, v = colorsys.rgb_to_hsv(*img[:, y, x])
            out[:, y, x] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


def _jitter_ref(img: np.ndarray, b: float, c: float, s: float, h: float, order: list[int]) -> np.ndarray:
    """torchvision's ColorJitter steps (tensor backend) for one image, in the given order."""
    def gray(a):
        return 0.299 * a[0] + 0.587 * a[1] + 0.114 * a[2]
    for step in order:
        if step == 0:
            img = np.clip(img * b, 0, 1)
        elif step == 1:
            img = np.clip(c * img + (1 - c) * gray(img).mean(), 0, 1)
        elif step == 2:
            img = np.clip(s * img + (1 - s) * gray(img)[None], 0, 1)
        else:
            img = _hue_ref(img, h)
    return img


def test_adjust_hue_matches_colorsys():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 5, 5)
    x[0, :, 0, 0] = 0.5  # gray pixel: hue undefined, must stay
    x[1, :, 0, 0] = torch.tensor([0.7, 0.7, 0.2])  # ties between channels
    shift = torch.tensor([0.1, -0.1, 0.5, -0.37])
    out = ops.adjust_hue(x, shift)
    for i in range(4):
        ref = _hue_ref(x[i].double().numpy(), float(shift[i]))
        np.testing.assert_allclose(out[i].double().numpy(), ref, atol=1e-5)


def test_adjust_hue_agrees_with_kornia():
    from kornia.enhance import adjust_hue as k_hue
    torch.manual_seed(1)
    x = torch.rand(6, 3, 7, 7)
    shift = torch.linspace(-0.4, 0.4, 6)
    torch.testing.assert_close(ops.adjust_hue(x, shift), k_hue(x, shift * 2 * math.pi), atol=1e-4, rtol=0)


def test_color_jitter_matches_per_image_reference_with_random_order():
    torch.manual_seed(0)
    n = 12
    x = torch.rand(n, 3, 5, 5)
    b, c, s, h, order = params.jitter_params(n, 0.4, 0.4, 0.4, 0.1, p=0.8)
    assert sorted(order[0].tolist()) == [0, 1, 2, 3]
    out = ops.color_jitter(x, b, c, s, h, order)
    for i in range(n):
        ref = _jitter_ref(x[i].double().numpy(), float(b[i]), float(c[i]), float(s[i]), float(h[i]),
                          order[i].tolist())
        np.testing.assert_allclose(out[i].double().numpy(), ref, atol=1e-5)


def test_jitter_params_distribution():
    torch.manual_seed(0)
    n = 4000
    b, c, s, h, order = params.jitter_params(n, 0.4, 0.3, 0.2, 0.1, p=0.8)
    applied = (b != 1) | (c != 1) | (s != 1) | (h != 0)
    assert abs(applied.double().mean().item() - 0.8) < _tol(0.8, n)
    for f, a in ((b, 0.4), (c, 0.3), (s, 0.2)):
        fa = f[applied]
        assert fa.min() >= 1 - a and fa.max() <= 1 + a and abs(fa.mean().item() - 1) < 0.02
    assert h[applied].abs().max() <= 0.1
    assert bool((order.sort(1).values == torch.arange(4)).all())
    # Every step is first about a quarter of the time.
    counts = torch.bincount(order[:, 0], minlength=4).double() / n
    assert bool(((counts - 0.25).abs() < _tol(0.25, n)).all())


def test_gaussian_blur_matches_reflect_conv_reference():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 9, 9)
    sigma = torch.tensor([0.5, 1.0, 2.0])
    mask = torch.tensor([True, False, True])
    k = 5
    out = ops.gaussian_blur(x, mask, sigma, k)
    torch.testing.assert_close(out[1], x[1])
    for i in (0, 2):
        t = torch.arange(k, dtype=torch.float64) - k // 2
        g = torch.exp(-t ** 2 / (2 * float(sigma[i]) ** 2))
        g = g / g.sum()
        kern = (g[:, None] * g[None, :]).expand(3, 1, k, k)
        padded = F.pad(x[i:i + 1].double(), (k // 2,) * 4, mode="reflect")
        ref = F.conv2d(padded, kern, groups=3)
        torch.testing.assert_close(out[i:i + 1].double(), ref, atol=1e-5, rtol=0)


def test_blur_equals_kornias_and_never_reads_sigma_back():
    from kornia.filters import gaussian_blur2d as kornia_blur

    g = torch.Generator().manual_seed(3)
    x = torch.rand(6, 3, 24, 20, generator=g)
    sigma = 0.1 + 1.9 * torch.rand(6, generator=g)
    for k in (3, 9, 23):
        ref = kornia_blur(x, (k, k), torch.stack([sigma, sigma], 1), border_type="reflect")
        torch.testing.assert_close(ops.gaussian_blur2d(x, sigma, k), ref, atol=2e-6, rtol=0)
    # no op that reads a device value on the host (kornia's blur reads sigma back: one per call)
    from torch.utils._python_dispatch import TorchDispatchMode

    reads = []

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func.__name__.split(".")[0] in ("_local_scalar_dense", "nonzero", "repeat_interleave"):
                reads.append(func.__name__)
            return func(*args, **(kwargs or {}))

    with Reads():
        ops.gaussian_blur(x, torch.ones(6, dtype=torch.bool), sigma, 9, sync_free=True)
    assert reads == []
    with Reads():
        kornia_blur(x, (9, 9), torch.stack([sigma, sigma], 1), border_type="reflect")
    assert reads, "the counter sees kornia's host read (else this test proves nothing)"


def test_solarize_inverts_above_threshold_only_in_mask():
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4).expand(2, 3, 1, 4)
    out = ops.solarize(x, torch.tensor([True, False]))
    torch.testing.assert_close(out[0, 0, 0], torch.tensor([0.1, 0.49, 0.5, 0.1]))
    torch.testing.assert_close(out[1], x[1])


def test_blur_kernel_is_about_ten_percent_and_odd():
    assert blur_kernel_size(224) == 23  # BYOL
    assert blur_kernel_size(32) == 3
    assert all(blur_kernel_size(s) % 2 == 1 for s in range(1, 300))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, word", [
    ({"recipe": "nope"}, "recipe"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": 3.5}, "image_size"),
    ({"mean": (0.5, 0.5)}, "mean"),
    ({"std": (0.5, 0.0, 0.5)}, "std"),
    ({"std": 0.5}, "std"),
    ({"cpu_threads": 0}, "cpu_threads"),
])
def test_build_augment_rejects_bad_arguments(kwargs, word):
    args = {"recipe": "simsiam-cifar", "image_size": 32, "mean": MEAN, "std": STD} | kwargs
    with pytest.raises(UserError, match=word) as info:
        build_augment(**args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("bad", [
    torch.rand(2, 3, 8, 8),
    torch.zeros(2, 1, 8, 8, dtype=torch.uint8),
    torch.zeros(3, 8, 8, dtype=torch.uint8),
])
def test_views_and_eval_reject_non_uint8_nchw(bad):
    a = build_augment("tiny", 8, MEAN, STD)
    with pytest.raises(UserError, match="uint8"):
        a.views(bad)
    with pytest.raises(UserError, match="uint8"):
        a.eval(bad)


def test_tiny_recipe_never_flips_and_stays_mild():
    v1, v2 = build_augment("tiny", 8, MEAN, STD).specs
    assert v1 == v2 and v1.flip_p == 0.0 and v1.scale[0] >= 0.5
    # An asymmetric image keeps its orientation: left half bright, right half dark.
    x = torch.zeros(500, 3, 8, 8, dtype=torch.uint8)
    x[..., :4] = 255
    torch.manual_seed(0)
    v, _ = build_augment("tiny", 8, MEAN, STD).views(x)
    u = unnormalize(v)
    assert bool((u[..., :2].mean((1, 2, 3)) > u[..., -2:].mean((1, 2, 3))).all())


def test_real_cifar_views_are_standardized_by_dataset_stats():
    path = Path(__file__).resolve().parents[2] / "../shared/data/cifar10-1k.npz"
    if not path.exists():
        pytest.skip(f"real CIFAR-10 sample not found at {path} (see ../shared/data/README.md)")
    with np.load(path, allow_pickle=False) as z:
        x = torch.from_numpy(z["x_train"][:512]).permute(0, 3, 1, 2).contiguous()
    xf = x.double() / 255
    mean = xf.mean(dim=(0, 2, 3)).tolist()
    std = xf.std(dim=(0, 2, 3)).tolist()
    a = build_augment("simsiam-cifar", 32, mean, std)
    e = a.eval(x).double()
    torch.testing.assert_close(e.mean(dim=(0, 2, 3)), torch.zeros(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.testing.assert_close(e.std(dim=(0, 2, 3)), torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    torch.manual_seed(0)
    v1, v2 = a.views(x)
    for v in (v1, v2):  # jitter/crops move the statistics, but not wildly
        assert v.mean().abs() < 0.3 and 0.6 < v.std() < 1.3
        assert torch.isfinite(v).all()


def test_eval_of_large_images_is_resize_256_centre_crop_224():
    """Above 64 px the eval is Resize(S / 0.875) -> CenterCrop(S): a 300 px square is resized to 256
    and its central 224 kept; up to 64 px the whole image is resized (the old transform)."""
    import torch.nn.functional as F

    from simxir.augment import build_augment

    x = torch.randint(0, 256, (2, 3, 300, 300), dtype=torch.uint8)
    aug = build_augment("byol-imagenet", 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    ref = F.interpolate(x.float() / 255, size=(256, 256), mode="bilinear", antialias=True).clamp(0, 1)
    assert torch.allclose(aug.eval(x), ref[:, :, 16:240, 16:240], atol=1e-6)
    small = build_augment("simsiam-cifar", 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    y = torch.randint(0, 256, (2, 3, 48, 48), dtype=torch.uint8)
    ref = F.interpolate(y.float() / 255, size=(32, 32), mode="bilinear", antialias=True).clamp(0, 1)
    assert torch.allclose(small.eval(y), ref, atol=1e-6)


def test_simsiam_imagenet_views_are_simsiams_own():
    """facebookresearch/simsiam main_simsiam.py: RandomResizedCrop(224, scale=(0.2, 1.)), ColorJitter(0.4, 0.4,
    0.4, 0.1) at p 0.8, RandomGrayscale(0.2), GaussianBlur([.1, 2.]) at p 0.5, flip; the same for both crops."""
    from simxir.augment import build_augment

    aug = build_augment("simsiam-imagenet", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    v1, v2 = aug.specs
    assert v1 == v2
    assert (v1.scale, v1.jitter, v1.jitter_p, v1.gray_p, v1.blur_p, v1.blur_sigma, v1.solarize_p, v1.flip_p) == \
        ((0.2, 1.0), (0.4, 0.4, 0.4, 0.1), 0.8, 0.2, 0.5, (0.1, 2.0), 0.0, 0.5)
    x = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    a, b = aug.views(x)
    assert a.shape == b.shape == (4, 3, 224, 224) and not torch.equal(a, b)
