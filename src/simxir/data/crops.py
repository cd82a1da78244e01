"""Crops of one image file on its original size: torchvision's RandomResizedCrop (+ flip) for the
training views, Resize -> CenterCrop for evaluation; uint8 CHW out.

Randomness comes from a generator seeded by ``(seed, epoch, sample index, view)``, so a view does
not depend on which process or worker decodes it.

Resizing is antialiased and runs on uint8 with torch (bicubic for training crops, bilinear for the
evaluation resize, as torchvision's defaults in the anchors' recipes); it agrees with Pillow's
resize of the same box to within a few grey levels (mean |diff| ~0.01) and is ~2x faster.

Reduced-size JPEG decoding (``draft``): a JPEG is decoded at 1/s of its size (s in 1, 2, 4, 8) only
when every box still has at least ``s`` times the output size on its shorter side, i.e. when the
resize would shrink the box by at least ``s`` anyway. The DCT-domain reduction then removes only
detail above what the antialiased resize keeps; tests/data/test_stream.py checks that it changes
the output less than switching the resize filter (bicubic -> bilinear) does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from simxir.sizes import EVAL_CROP_RATIO

DRAFT_SCALES = (8, 4, 2)

Box = tuple[int, int, int, int]  # top, left, height, width


def view_rng(seed: int, epoch: int, index: int, view: int) -> np.random.Generator:
    """The generator of one view of one sample in one epoch."""
    return np.random.default_rng([int(seed) % 2**63, int(epoch), int(index), int(view)])


def sample_box(rng: np.random.Generator, height: int, width: int, scale: Sequence[float],
               ratio: Sequence[float], attempts: int = 10) -> Box:
    """torchvision ``RandomResizedCrop.get_params``: area fraction ~ U(scale), log aspect (w/h) ~
    U(log ratio), the first of ``attempts`` candidates that fits, placed uniformly; else the largest
    central crop with the aspect clamped into ``ratio``."""
    area = height * width
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(attempts):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def draft_scale(boxes: Sequence[Box], size: int) -> int:
    """The largest JPEG reduction s (8, 4, 2, else 1) with every box's shorter side >= s * size."""
    shortest = min(min(b[2], b[3]) for b in boxes)
    return next((s for s in DRAFT_SCALES if shortest >= s * size), 1)


def open_image(path: str | Path):  # noqa: ANN201 - a PIL image
    """The file, opened lazily (header only)."""
    from PIL import Image  # noqa: PLC0415 - start-up time

    return Image.open(path)


def decode_rgb(im, scale: int = 1) -> torch.Tensor:  # noqa: ANN001 - a PIL image
    """Decode ``im`` (JPEG at 1/``scale`` of its size via draft) as a uint8 (3, H', W') view of
    an HWC array; grayscale, CMYK, palette and alpha images become RGB."""
    if scale > 1 and im.format == "JPEG":
        w, h = im.size
        im.draft(im.mode, (math.ceil(w / scale), math.ceil(h / scale)))
    return torch.from_numpy(to_rgb(im)).permute(2, 0, 1)


def to_rgb(im) -> np.ndarray:  # noqa: ANN001 - a PIL image
    """``im`` as a uint8 (H, W, 3) RGB array: palette and alpha images through RGBA, 16- and 32-bit
    grayscale (PNG ``I;16``, ``I``) scaled to 8 bits (x 255 / 65535, rounded) instead of being
    clipped at 255 by Pillow's own conversion, float images (``F``) clipped to 0..255."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im, dtype=np.float64)
        if im.mode != "F":
            a = a * (255.0 / 65535.0)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(g[:, :, None], 3, axis=2)
    if im.mode != "RGB":
        im = im.convert("RGBA").convert("RGB") if im.mode == "P" else im.convert("RGB")
    return np.array(im, dtype=np.uint8)


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """Antialiased resize of a uint8 (3, h, w) tensor to ``size`` (h, w); uint8 out."""
    if tuple(x.shape[1:]) == tuple(size):
        return x.contiguous()
    return F.interpolate(x[None], size=size, mode=mode, antialias=True, align_corners=False)[0]


def _scaled(box: Box, sy: float, sx: float, height: int, width: int) -> Box:
    top, left, h, w = box
    t, lft = int(math.floor(top * sy)), int(math.floor(left * sx))
    b, r = min(height, int(math.ceil((top + h) * sy))), min(width, int(math.ceil((left + w) * sx)))
    return t, lft, max(1, b - t), max(1, r - lft)


def train_views(path: str | Path, rngs: Sequence[np.random.Generator], size: int,
                specs: Sequence[object]) -> list[torch.Tensor]:
    """``len(specs)`` RandomResizedCrop + flip views of one file: uint8 (3, s, s) each, ``s`` the
    spec's ``size`` or ``size``, all cut from one decode of the file.

    ``specs`` carry ``scale``, ``ratio``, ``flip_p``, ``size`` and ``raw`` (``simxir.augment.ViewSpec``);
    view ``v`` draws its box and flip from ``rngs[v]``, box first; a ``raw`` spec is :func:`eval_view`
    (from the same decode, unless the file is a JPEG its crops need at another draft scale)."""
    sizes = [getattr(spec, "size", 0) or size for spec in specs]
    raw = [bool(getattr(spec, "raw", False)) for spec in specs]
    with open_image(path) as im:
        width, height = im.size
        boxes, flips = [], []
        for rng, spec, r in zip(rngs, specs, raw):
            if r:
                boxes.append(None)
                flips.append(False)
                continue
            boxes.append(sample_box(rng, height, width, spec.scale, spec.ratio))  # type: ignore[attr-defined]
            flips.append(bool(rng.random() < spec.flip_p))  # type: ignore[attr-defined]
        cut = [draft_scale([b], s) for b, s in zip(boxes, sizes) if b is not None]
        scale = min(cut or [_eval_draft(height, width, s) for r, s in zip(raw, sizes) if r])
        x = decode_rgb(im, scale)
        jpeg = im.format == "JPEG"
    out: list[torch.Tensor] = []
    for box, flip, s in zip(boxes, flips, sizes):
        if box is None:
            shared = not jpeg or _eval_draft(height, width, s) == scale
            out.append(_centre_view(x, s, EVAL_CROP_RATIO) if shared else eval_view(path, s))
            continue
        sy, sx = x.shape[1] / height, x.shape[2] / width
        t, lft, h, w = box if (sy, sx) == (1.0, 1.0) else _scaled(box, sy, sx, x.shape[1], x.shape[2])
        crop = resize(x[:, t:t + h, lft:lft + w], (s, s), "bicubic")
        out.append(crop.flip(2) if flip else crop)
    return out


def _eval_short(size: int, crop_ratio: float) -> int:
    return max(size, int(round(size / crop_ratio)))


def _eval_draft(height: int, width: int, size: int, crop_ratio: float = EVAL_CROP_RATIO) -> int:
    """The JPEG draft scale :func:`eval_view` decodes an image of this size at."""
    return draft_scale([(0, 0, height, width)], _eval_short(size, crop_ratio))


def eval_view(path: str | Path, size: int, crop_ratio: float = EVAL_CROP_RATIO) -> torch.Tensor:
    """Resize the shorter side to ``round(size / crop_ratio)`` (bilinear, antialiased), then the
    central ``size`` x ``size`` crop: uint8 (3, size, size). ``crop_ratio`` 1 keeps the whole
    shorter side."""
    with open_image(path) as im:
        width, height = im.size
        x = decode_rgb(im, _eval_draft(height, width, size, crop_ratio))
    return _centre_view(x, size, crop_ratio)


def _centre_view(x: torch.Tensor, size: int, crop_ratio: float) -> torch.Tensor:
    """:func:`eval_view` of a decoded uint8 (3, H, W) image."""
    short = _eval_short(size, crop_ratio)
    h, w = x.shape[1:]
    scale = short / min(h, w)
    new = (max(short, int(round(h * scale))), max(short, int(round(w * scale))))
    x = resize(x, new, "bilinear")
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return x[:, top:top + size, left:left + size].contiguous()
