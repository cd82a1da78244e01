"""Per-sample random parameters, drawn on the CPU from torch's global generator.

Drawing on the CPU keeps a seed's views identical whatever device the images are on
(``torch.manual_seed(s)`` -> the same boxes, factors and masks on CPU and GPU).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def bernoulli(n: int, p: float) -> Tensor:
    """(n,) bool, each True with probability ``p``."""
    return torch.rand(n) < p


def uniform(n: int, low: float, high: float) -> Tensor:
    return torch.rand(n) * (high - low) + low


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float], attempts: int = 10) -> Tensor:
    """torchvision ``RandomResizedCrop.get_params`` for a batch: (n, 4) = (top, left, h, w).

    Area fraction ~ U(scale), log aspect (w/h) ~ U(log ratio); the first of ``attempts`` candidates
    that fits is used, else the central crop with the aspect clamped into ``ratio``.
    """
    area = height * width
    target = area * (torch.rand(n, attempts) * (scale[1] - scale[0]) + scale[0])
    log_r = torch.rand(n, attempts) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # index of the first True (0 if none)
    ok = fits.any(dim=1)
    rows = torch.arange(n)
    w, h = w[rows, first], h[rows, first]
    # Fallback: whole image, or the largest central crop whose aspect is inside ``ratio``.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    w = torch.where(ok, w, torch.full_like(w, fw))
    h = torch.where(ok, h, torch.full_like(h, fh))
    u = torch.rand(n, 2)
    top = torch.floor(u[:, 0] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, 1] * (width - w + 1)).clamp_(max=width - w)
    top = torch.where(ok, top, (height - h) // 2)
    left = torch.where(ok, left, (width - w) // 2)
    return torch.stack([top, left, h, w], 1)


def jitter_params(n: int, brightness: float, contrast: float, saturation: float, hue: float,
                  p: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """torchvision ColorJitter factors per sample, neutral (1, 1, 1, 0) where not applied (prob 1-p).

    brightness/contrast/saturation ~ U(max(0, 1 - a), 1 + a), hue ~ U(-a, a); order is a random
    permutation of the four steps per sample. Returns (b, c, s, h, order (n, 4)).
    """
    applied = bernoulli(n, p)
    out = []
    for a in (brightness, contrast, saturation):
        f = uniform(n, max(0.0, 1.0 - a), 1.0 + a) if a > 0 else torch.ones(n)
        out.append(torch.where(applied, f, torch.ones(n)))
    h = uniform(n, -hue, hue) if hue > 0 else torch.zeros(n)
    out.append(torch.where(applied, h, torch.zeros(n)))
    order = torch.argsort(torch.rand(n, 4), dim=1)
    return out[0], out[1], out[2], out[3], order
