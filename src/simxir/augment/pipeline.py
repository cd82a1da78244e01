"""Recipes and the :class:`Augment` object: uint8 NCHW batches -> a sequence of normalized float views,
one per :class:`ViewSpec` (two for most methods; 2 global + N local crops with multi-crop)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from simxir.augment import ops, params
from simxir.errors import UserError
from simxir.sizes import eval_resize


@dataclass(frozen=True)
class ViewSpec:
    """The random transform of one view, applied in this order:
    resized crop (+ flip), colour jitter, grayscale, Gaussian blur, solarize, normalize.

    ``size``: the output side (0: the augment's ``image_size``; multi-crop's local crops are smaller).
    ``raw``: no random transform at all, the deterministic evaluation view (SimXIR's raw anchor)."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, sat, hue
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    size: int = 0
    raw: bool = False


RAW = ViewSpec(raw=True)


def _simsiam_cifar() -> tuple[ViewSpec, ViewSpec]:
    v = ViewSpec(scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, flip_p=0.5)
    return v, v


def _simsiam_imagenet() -> tuple[ViewSpec, ViewSpec]:
    """SimSiam's ImageNet views (facebookresearch/simsiam main_simsiam.py): crop scale 0.2-1, jitter
    0.4/0.4/0.4/0.1 at p 0.8, grayscale 0.2, Gaussian blur sigma 0.1-2 at p 0.5, flip; both views alike."""
    v = ViewSpec(scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1), jitter_p=0.8, gray_p=0.2, flip_p=0.5,
                 blur_p=0.5, blur_sigma=(0.1, 2.0))
    return v, v


def _byol_imagenet() -> tuple[ViewSpec, ViewSpec]:
    v1 = ViewSpec(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2,
                  flip_p=0.5, blur_p=1.0, solarize_p=0.0)
    return v1, replace(v1, blur_p=0.1, solarize_p=0.2)


def _tiny() -> tuple[ViewSpec, ViewSpec]:
    v = ViewSpec(scale=(0.6, 1.0), ratio=(5 / 6, 6 / 5), flip_p=0.0, jitter=(0.2, 0.2, 0.0, 0.0),
                 jitter_p=0.8, gray_p=0.0)
    return v, v


def _dino() -> tuple[ViewSpec, ViewSpec]:
    """DINO's global crops (facebookresearch/dino main_dino.py DataAugmentationDINO): crop scale
    0.4-1 (``--global_crops_scale``), flip, jitter 0.4/0.4/0.2/0.1 at p 0.8, grayscale 0.2; blur
    sigma 0.1-2 at p 1.0 (first) / 0.1 + solarize 0.2 (second). Its local crops: :data:`LOCAL_SPECS`."""
    v1 = ViewSpec(scale=(0.4, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, gray_p=0.2, flip_p=0.5,
                  blur_p=1.0, blur_sigma=(0.1, 2.0))
    return v1, replace(v1, blur_p=0.1, solarize_p=0.2)


_RECIPES = {"simsiam-cifar": _simsiam_cifar, "simsiam-imagenet": _simsiam_imagenet, "byol-imagenet": _byol_imagenet,
            "tiny": _tiny, "dino": _dino}
# a recipe's local crop (multi-crop) where it is not its first view at the local scale and size:
# DINO's is blur at p 0.5, no solarize (local_transfo)
LOCAL_SPECS = {"dino": lambda: replace(_dino()[0], blur_p=0.5)}
RECIPES: tuple[str, ...] = (*_RECIPES, "auto")


def auto_recipe(image_size: int) -> str:
    """``auto``'s choice by image side: ``tiny`` up to 16 px (digits: flips and strong crops
    destroy them), ``simsiam-cifar`` up to 64 px (CIFAR, SVHN, STL at 64), ``byol-imagenet`` above."""
    return "tiny" if image_size <= 16 else "simsiam-cifar" if image_size <= 64 else "byol-imagenet"


def blur_kernel_size(image_size: int) -> int:
    """~10% of the image side, odd, at least 3 (BYOL: 23 px at 224)."""
    k = max(3, int(0.1 * image_size))
    return k if k % 2 else k + 1


# Below this many output elements per batch, CPU work runs on one intra-op thread: the ops are
# short, and with several threads each op pays a barrier, which on a busy (oversubscribed) CPU
# made the pipeline 5-100x slower in benchmarks/bench_augment.py.
SMALL_BATCH_ELEMENTS = 1 << 22


@contextmanager
def _cpu_threads(x: Tensor, out_elements: int, threads: int | None) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads for CPU batches (None: 1 for small batches,
    else unchanged). The setting is per calling thread (OpenMP) and restored afterwards."""
    want = threads if threads is not None else (1 if out_elements <= SMALL_BATCH_ELEMENTS else None)
    before = torch.get_num_threads()
    if x.device.type != "cpu" or want is None or want == before:
        yield
        return
    torch.set_num_threads(want)
    try:
        yield
    finally:
        torch.set_num_threads(before)


Rows = tuple[int, int] | None   # (images drawn for, this batch's offset among them)


def _rows(n: int, rows: Rows) -> tuple[int, slice]:
    if rows is None:
        return n, slice(None)
    total, offset = rows
    if offset < 0 or offset + n > total:
        raise UserError(f"augment rows: {n} images at offset {offset} do not fit in {total}")
    return total, slice(offset, offset + n)


def _check_input(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise UserError(f"augment input: expected a uint8 tensor (N, 3, H, W), got {got}")


def _specs(specs: Sequence[ViewSpec]) -> tuple[ViewSpec, ...]:
    if isinstance(specs, ViewSpec) or not isinstance(specs, Sequence) or not specs \
            or not all(isinstance(v, ViewSpec) for v in specs):
        raise UserError(f"augment views: expected a sequence of one or more ViewSpec, got {specs!r}")
    return tuple(specs)


class Augment:
    """Batched augmentation on the batch's own device: one view per spec of ``specs``.

    Random parameters are drawn on the batch's device, from the augment's own generator once
    :meth:`seed` has set one for that device (the training sources do, every epoch), else from
    torch's default generator of that device (``torch.manual_seed``)."""

    def __init__(self, recipe: str, image_size: int, mean: Sequence[float], std: Sequence[float],
                 specs: Sequence[ViewSpec], cpu_threads: int | None = None) -> None:
        self.recipe = recipe
        self.cpu_threads = cpu_threads
        self.image_size = image_size
        self.mean = torch.tensor([float(m) for m in mean], dtype=torch.float32)
        self.std = torch.tensor([float(s) for s in std], dtype=torch.float32)
        self.specs = _specs(specs)
        self.generator: torch.Generator | None = None
        self.sync_free: bool | None = None     # None: on every device but the CPU
        self._stats: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __repr__(self) -> str:
        return (f"Augment(recipe={self.recipe!r}, image_size={self.image_size}, views={len(self.specs)}, "
                f"mean={self.mean.tolist()}, std={self.std.tolist()})")

    def size_of(self, spec: ViewSpec) -> int:
        """The output side of ``spec``'s view."""
        return spec.size or self.image_size

    def with_specs(self, specs: Sequence[ViewSpec]) -> Augment:
        """The same augmentation (sizes, statistics, generator) making ``specs``' views instead."""
        out = copy.copy(self)
        out.specs = _specs(specs)
        return out

    def seed(self, seed: int, device: torch.device | str) -> None:
        """Draw from now on from an own generator on ``device``, seeded with ``seed``."""
        device = torch.device(device)
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)

    def _gen(self, x: Tensor) -> torch.Generator | None:
        g = self.generator
        return g if g is not None and g.device == x.device else None

    def _no_sync(self, x: Tensor) -> bool:
        return x.device.type != "cpu" if self.sync_free is None else self.sync_free

    def _threads(self, x: Tensor, size: int | None = None) -> AbstractContextManager[None]:
        return _cpu_threads(x, x.shape[0] * 3 * (size or self.image_size) ** 2, self.cpu_threads)

    def view(self, x: Tensor, spec: ViewSpec, rows: Rows = None) -> Tensor:
        """One random view of a uint8 batch -> normalized float32, (N, 3, size, size).

        ``rows=(total, offset)``: draw the parameters of a batch of ``total`` images and use rows
        ``offset .. offset + N`` (a process's share of the global batch: every process draws what
        one process would, so a distributed run sees the single-process run's views).
        A ``raw`` spec gives :meth:`eval`'s view and draws nothing."""
        if spec.raw:
            return self.eval(x)
        _check_input(x)
        with self._threads(x, self.size_of(spec)):
            return self._view(x, spec, rows)

    def _view(self, x: Tensor, spec: ViewSpec, rows: Rows = None) -> Tensor:
        n, _, height, width = x.shape
        total, sl = _rows(n, rows)
        # All random draws happen here, on x's device, in a fixed order.
        kw = {"device": x.device, "generator": self._gen(x)}
        boxes = params.crop_boxes(total, height, width, spec.scale, spec.ratio, **kw)[sl]
        flip = params.bernoulli(total, spec.flip_p, **kw)[sl]
        draws = self._colour_draws(total, spec, kw, sl)
        size = self.size_of(spec)
        return self._colour(ops.resized_crop(ops.to_float(x), boxes, size, flip), spec, draws)

    @staticmethod
    def _colour_draws(n: int, spec: ViewSpec, kw: dict, sl: slice = slice(None)) -> tuple[Tensor, ...]:
        jit = params.jitter_params(n, *spec.jitter, p=spec.jitter_p, **kw)
        out = (*jit, params.bernoulli(n, spec.gray_p, **kw), params.bernoulli(n, spec.blur_p, **kw),
               params.uniform(n, *spec.blur_sigma, **kw), params.bernoulli(n, spec.solarize_p, **kw))
        return tuple(t[sl] for t in out)

    def _colour(self, out: Tensor, spec: ViewSpec, draws: tuple[Tensor, ...]) -> Tensor:
        jit, (gray, blur, sigma, sol) = draws[:5], draws[5:]
        no_sync = self._no_sync(out)
        if spec.jitter_p > 0 and any(spec.jitter):
            out = ops.color_jitter(out, *jit, sync_free=no_sync)
        if spec.gray_p > 0:
            out = ops.grayscale(out, gray)
        if spec.blur_p > 0:
            out = ops.gaussian_blur(out, blur, sigma, blur_kernel_size(out.shape[-1]), sync_free=no_sync)
        if spec.solarize_p > 0:
            out = ops.solarize(out, sol)
        return self._normalize(out)

    def _normalize(self, x: Tensor) -> Tensor:
        """``ops.normalize`` with mean/std copied to x's device once, not per batch."""
        if x.device not in self._stats:
            self._stats[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        return ops.normalize(x, *self._stats[x.device])

    def finish(self, crops: Tensor, spec: ViewSpec, rows: Rows = None) -> Tensor:
        """The rest of one view (colour jitter ... normalize) for a uint8 batch of crops already
        resized to the spec's size and flipped (the streamed loader's output; a ``raw`` spec's crops
        are the evaluation view, only normalized)."""
        _check_input(crops)
        size = self.size_of(spec)
        if tuple(crops.shape[2:]) != (size, size):
            raise UserError(f"augment crops: expected {size}x{size}, got {crops.shape[2]}x{crops.shape[3]}")
        if spec.raw:
            return self._normalize(ops.to_float(crops))
        kw = {"device": crops.device, "generator": self._gen(crops)}
        total, sl = _rows(crops.shape[0], rows)
        with self._threads(crops, size):
            return self._colour(ops.to_float(crops), spec, self._colour_draws(total, spec, kw, sl))

    def finish_views(self, crops: Sequence[Tensor], rows: Rows = None) -> list[Tensor]:
        """:meth:`finish` of each spec's crops, in order."""
        if len(crops) != len(self.specs):
            raise UserError(f"augment crops: expected {len(self.specs)} views, got {len(crops)}")
        return [self.finish(c, spec, rows) for c, spec in zip(crops, self.specs)]

    def views(self, x: Tensor, rows: Rows = None) -> list[Tensor]:
        """One view per spec, in order, of a uint8 NCHW batch (``rows``: see :meth:`view`)."""
        return [self.view(x, spec, rows) for spec in self.specs]

    def eval(self, x: Tensor) -> Tensor:
        """Deterministic: resize the shorter side to :func:`simxir.sizes.eval_resize` (antialiased;
        256 for 224, ``image_size`` itself up to 64 px) unless it is already that or ``image_size``
        (images that arrive eval-cropped), centre-crop ``image_size``, normalize."""
        _check_input(x)
        with self._threads(x):
            return self._eval(x)

    def _eval(self, x: Tensor) -> Tensor:
        out = ops.to_float(x)
        height, width = out.shape[-2:]
        size = self.image_size
        short = eval_resize(size)
        if min(height, width) not in (size, short):
            scale = short / min(height, width)
            new = (max(short, round(height * scale)), max(short, round(width * scale)))
            out = F.interpolate(out, size=new, mode="bilinear", align_corners=False, antialias=True)
            out = out.clamp_(0.0, 1.0)
            height, width = new
        if (height, width) != (size, size):
            top, left = (height - size) // 2, (width - size) // 2
            out = out[:, :, top:top + size, left:left + size]
        return self._normalize(out)


@dataclass
class MultiCropConfig:
    """The views each image gives: ``global_crops`` of the recipe's views (its views in turn) and
    ``local_crops`` smaller crops (DINO's multi-crop: 2 global at 224 px, scale 0.4-1, and local at
    96 px, scale 0.05-0.4). Two global crops and no local ones are the recipe itself."""

    global_crops: int = 2
    local_crops: int = 0
    global_size: int = 0                            # 0: the run's image_size
    local_size: int = 0                             # 0: local_size_for(image_size): 96 at 224, 16 at 32
    global_scale: tuple[float, float] | None = None  # None: the recipe's crop scale
    local_scale: tuple[float, float] = (0.05, 0.4)


def local_size_for(image_size: int) -> int:
    """DINO's local side relative to the global one (96 / 224), as a multiple of 8 (ViT patches), >= 8."""
    return max(8, 8 * round(image_size * 3 / 56))


def _check_scale(key: str, v: Any) -> tuple[float, float]:
    ok = isinstance(v, Sequence) and len(v) == 2 and all(isinstance(a, int | float) and not isinstance(a, bool)
                                                           for a in v)
    if not ok or not 0 < v[0] <= v[1] <= 1:
        raise UserError(f"multicrop.{key}: expected [low, high] with 0 < low <= high <= 1, got {v!r}")
    return float(v[0]), float(v[1])


def view_specs(recipe: str, image_size: int, multicrop: MultiCropConfig | None = None) -> tuple[ViewSpec, ...]:
    """The recipe's views for ``multicrop`` (None: the recipe's own two views)."""
    base = _RECIPES[recipe]()
    mc = multicrop or MultiCropConfig()
    for key in ("global_crops", "local_crops", "global_size", "local_size"):
        v = getattr(mc, key)
        low = 1 if key == "global_crops" else 0
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise UserError(f"multicrop.{key}: expected an integer >= {low}, got {v!r}")
    globals_ = [base[i % len(base)] for i in range(mc.global_crops)]
    if mc.global_scale is not None:
        scale = _check_scale("global_scale", mc.global_scale)
        globals_ = [replace(v, scale=scale) for v in globals_]
    if mc.global_size and mc.global_size != image_size:
        globals_ = [replace(v, size=mc.global_size) for v in globals_]
    if not mc.local_crops:
        return tuple(globals_)
    local = LOCAL_SPECS[recipe]() if recipe in LOCAL_SPECS else replace(base[0], solarize_p=0.0)
    local = replace(local, scale=_check_scale("local_scale", mc.local_scale),
                    size=mc.local_size or local_size_for(image_size))
    return (*globals_, *[local] * mc.local_crops)


def build_augment(recipe: str, image_size: int, mean: Sequence[float], std: Sequence[float], *,
                  cpu_threads: int | None = None, multicrop: MultiCropConfig | None = None) -> Augment:
    """The named recipe (one of :data:`RECIPES`; ``auto``: :func:`auto_recipe`) for ``image_size``
    images and dataset mean/std, with the views ``multicrop`` asks for (None: the recipe's two).

    ``cpu_threads``: intra-op threads for CPU batches (None: 1 thread for small batches of at most
    ``SMALL_BATCH_ELEMENTS`` output values, torch's setting otherwise)."""
    if recipe not in RECIPES:
        raise UserError(f"augment recipe: expected one of {', '.join(RECIPES)}, got {recipe!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise UserError(f"augment image_size: expected a positive integer, got {image_size!r}")
    if recipe == "auto":
        recipe = auto_recipe(image_size)
    for name, vals in (("mean", mean), ("std", std)):
        if not isinstance(vals, Sequence | Tensor) or len(vals) != 3:
            raise UserError(f"augment {name}: expected 3 per-channel values, got {vals!r}")
    if any(float(s) <= 0 for s in std):
        raise UserError(f"augment std: expected positive values, got {list(std)}")
    if cpu_threads is not None and (isinstance(cpu_threads, bool) or not isinstance(cpu_threads, int)
                                    or cpu_threads < 1):
        raise UserError(f"augment cpu_threads: expected a positive integer or None, got {cpu_threads!r}")
    return Augment(recipe, image_size, mean, std, view_specs(recipe, image_size, multicrop), cpu_threads)
