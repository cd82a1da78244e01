"""Per-sample random parameters, drawn on the batch's device.

Each function takes the ``device`` and an optional ``generator`` on that device (None: torch's
default generator of the device), so nothing is drawn on the host and copied: on a GPU the
augmentation never waits for a host-to-device copy. A CPU generator seeded like the global one
draws the same numbers, so CPU runs are unchanged by the choice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

Device = torch.device | str | None


def _rand(*shape: int, device: Device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(*shape, device=device, generator=generator)


def bernoulli(n: int, p: float, device: Device = None, generator: torch.Generator | None = None) -> Tensor:
    """(n,) bool, each True with probability ``p``."""
    return _rand(n, device=device, generator=generator) < p


def uniform(n: int, low: float, high: float, device: Device = None,
            generator: torch.Generator | None = None) -> Tensor:
    return _rand(n, device=device, generator=generator) * (high - low) + low


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float],
               ratio: tuple[float, float], attempts: int = 10, device: Device = None,
               generator: torch.Generator | None = None) -> Tensor:
    """torchvision ``RandomResizedCrop.get_params`` for a batch: (n, 4) = (top, left, h, w).

    Area fraction ~ U(scale), log aspect (w/h) ~ U(log ratio); the first of ``attempts`` candidates
    that fits is used, else the central crop with the aspect clamped into ``ratio``.
    """
    area = height * width
    kw = {"device": device, "generator": generator}
    target = area * (_rand(n, attempts, **kw) * (scale[1] - scale[0]) + scale[0])
    log_r = _rand(n, attempts, **kw) * (math.log(ratio[1]) - math.log(ratio[0])) + math.log(ratio[0])
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.to(torch.int8), dim=1)  # index of the first True (0 if none)
    ok = fits.any(dim=1)
    rows = torch.arange(n, device=w.device)
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
    u = _rand(n, 2, **kw)
    top = torch.floor(u[:, 0] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, 1] * (width - w + 1)).clamp_(max=width - w)
    top = torch.where(ok, top, (height - h) // 2)
    left = torch.where(ok, left, (width - w) // 2)
    return torch.stack([top, left, h, w], 1)


def jitter_params(n: int, brightness: float, contrast: float, saturation: float, hue: float,
                  p: float, device: Device = None, generator: torch.Generator | None = None
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """torchvision ColorJitter factors per sample, neutral (1, 1, 1, 0) where not applied (prob 1-p).

    brightness/contrast/saturation ~ U(max(0, 1 - a), 1 + a), hue ~ U(-a, a); order is a random
    permutation of the four steps per sample. Returns (b, c, s, h, order (n, 4)).
    """
    kw = {"device": device, "generator": generator}
    applied = bernoulli(n, p, **kw)
    ones, zeros = torch.ones(n, device=device), torch.zeros(n, device=device)
    out = []
    for a in (brightness, contrast, saturation):
        f = uniform(n, max(0.0, 1.0 - a), 1.0 + a, **kw) if a > 0 else ones
        out.append(torch.where(applied, f, ones))
    h = uniform(n, -hue, hue, **kw) if hue > 0 else zeros
    out.append(torch.where(applied, h, zeros))
    order = torch.argsort(_rand(n, 4, **kw), dim=1)
    return out[0], out[1], out[2], out[3], order
