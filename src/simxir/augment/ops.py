"""Batched image ops on float images in [0, 1], NCHW, with per-sample parameters.

Each op takes its random parameters as tensors (one row per sample), so it is deterministic and
testable; the sampling of those parameters lives in :mod:`simxir.augment.params`. Semantics follow
torchvision's tensor transforms (what SimSiam/BYOL/solo-learn use), computed for the whole batch at
once on the batch's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale and PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)


def to_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 0..1 (same device)."""
    return x.to(torch.float32).mul_(1.0 / 255.0)


def resized_crop(x: Tensor, boxes: Tensor, size: int, flip: Tensor | None = None) -> Tensor:
    """Crop ``boxes`` (N, 4) = (top, left, height, width) in pixels and resize each to ``size``.

    Bilinear, pixel-centre aligned, edges replicated at the box border: for a box inside the image
    this equals ``F.interpolate(x[i, :, top:top+h, left:left+w], size, mode="bilinear")`` (crop then
    resize, as torchvision), done for the whole batch by one ``grid_sample``. ``flip`` (N,) bool
    mirrors the selected outputs horizontally, fused into the same sampling grid.
    """
    n, _, height, width = x.shape
    b = boxes.to(device=x.device, dtype=torch.float32)
    top, left, h, w = (t.unsqueeze(1) for t in b.unbind(1))
    centres = torch.arange(size, device=x.device, dtype=torch.float32).unsqueeze(0) + 0.5  # (1, size)
    cx = centres if flip is None else torch.where(flip.to(x.device).unsqueeze(1), size - centres, centres)
    # Source pixel coordinates per output column/row, clamped to the box (edge replication).
    px = torch.minimum(torch.maximum(left + cx * (w / size) - 0.5, left), left + w - 1)
    py = torch.minimum(torch.maximum(top + centres * (h / size) - 0.5, top), top + h - 1)
    gx = (2 * px + 1) / width - 1  # grid_sample's align_corners=False convention
    gy = (2 * py + 1) / height - 1
    grid = torch.stack([gx.unsqueeze(1).expand(n, size, size), gy.unsqueeze(2).expand(n, size, size)], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rgb_to_gray(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) luma."""
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def grayscale(x: Tensor, mask: Tensor) -> Tensor:
    """Replace the selected samples (mask (N,) bool) by their luma, replicated to 3 channels."""
    m = mask.to(x.device).view(-1, 1, 1, 1)
    return torch.where(m, rgb_to_gray(x).expand_as(x), x)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """torchvision's ``adjust_hue``: rotate the HSV hue by ``shift`` (N,) turns, keep S and V.

    Uses the closed form HSV->RGB ``c_n = v - chroma * clamp(min(k, 4 - k), 0, 1)``,
    ``k = (n + 6 h) mod 6`` with n = 5, 3, 1 for R, G, B, so the saturation never has to be formed.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    safe = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    # Hue in sextants (0..6), the same case analysis as torchvision's _rgb2hsv / colorsys.
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h = torch.where(is_r, (g - b) / safe, torch.where(is_g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = h + 6.0 * shift.to(x.device, torch.float32).view(-1, 1, 1)
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(h + n, 6.0)
        out.append(maxc - chroma * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, 1)


def color_jitter(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor, hue: Tensor,
                 order: Tensor, sync_free: bool = False) -> Tensor:
    """torchvision's ColorJitter with per-sample factors (N,) and per-sample order (N, 4).

    ``order[i]`` is a permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue); a step with a
    neutral factor (1, 1, 1, 0) is the identity, so unselected samples pass neutral factors. Each
    of brightness/contrast/saturation is ``clamp(f * x + (1 - f) * t, 0, 1)`` with ``t`` = 0, the
    image's mean luma, or its luma image; all samples doing one of them at a position share one pass.

    ``sync_free``: never read a device value on the host (for GPUs): every pass runs on the whole
    batch and selects with ``where``, instead of skipping passes and hue-shifting only the selected
    samples (faster on the CPU, where reading is free). Both give the same result.
    """
    dev = x.device
    fb, fc, fs, fh = (t.to(dev, torch.float32) for t in (brightness, contrast, saturation, hue))
    order = order.to(dev)
    for pos in range(order.shape[1]):
        step = order[:, pos]
        factor = torch.where(step == 0, fb, torch.where(step == 1, fc, torch.where(step == 2, fs, 1.0)))
        if sync_free or bool((factor != 1).any()):  # f == 1 gives exactly x: unselected samples pass
            gray = rgb_to_gray(x)
            w_con = (step == 1).to(x.dtype).view(-1, 1, 1, 1)
            w_sat = (step == 2).to(x.dtype).view(-1, 1, 1, 1)
            target = torch.addcmul(gray.mean(dim=(2, 3), keepdim=True) * w_con, gray, w_sat)
            # f * x + (1 - f) * target, as one lerp towards the target with weight 1 - f.
            x = torch.lerp(x, target.expand_as(x), (1 - factor).view(-1, 1, 1, 1).expand_as(x)).clamp_(0.0, 1.0)
        sel = (step == 3) & (fh != 0)
        if sync_free:
            x = torch.where(sel.view(-1, 1, 1, 1), adjust_hue(x, fh), x)
            continue
        idx = sel.nonzero().squeeze(1)
        if idx.numel():
            x = x.index_copy(0, idx, adjust_hue(x.index_select(0, idx), fh.index_select(0, idx)))
    return x


def gaussian_blur2d(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur of each sample with its own ``sigma`` (N,), reflect borders: kornia's
    ``gaussian_blur2d`` (the same kernel, exp(-t^2 / 2 sigma^2) over t = -k//2..k//2, normalised),
    with the kernels built on the device from ``sigma`` (kornia reads sigma back to the host: a GPU
    sync per call). One grouped convolution per direction."""
    n, c, h, w = x.shape
    t = torch.arange(kernel_size, device=x.device, dtype=torch.float32) - kernel_size // 2
    g = torch.exp(-t.pow(2) / (2 * sigma.to(x.device, torch.float32).pow(2)[:, None]))   # (N, k)
    g = (g / g.sum(1, keepdim=True)).to(x.dtype)[:, None].expand(n, c, kernel_size).reshape(n * c, kernel_size)
    half = kernel_size // 2
    y = F.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(y, g.view(n * c, 1, kernel_size, 1), groups=n * c)
    y = F.conv2d(y, g.view(n * c, 1, 1, kernel_size), groups=n * c)
    return y.view(n, c, h, w)


def gaussian_blur(x: Tensor, mask: Tensor, sigma: Tensor, kernel_size: int, sync_free: bool = False) -> Tensor:
    """Blur the selected samples with per-sample ``sigma`` (N,), reflect borders (:func:`gaussian_blur2d`).

    ``sync_free``: blur the whole batch and select with ``where`` (no host read of the mask)."""
    mask = mask.to(x.device)
    sigma = sigma.to(x.device, torch.float32)
    if sync_free:
        return torch.where(mask.view(-1, 1, 1, 1), gaussian_blur2d(x, sigma, kernel_size), x)
    if bool(mask.all()):
        return gaussian_blur2d(x, sigma, kernel_size)
    idx = mask.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    blurred = gaussian_blur2d(x.index_select(0, idx), sigma.index_select(0, idx), kernel_size)
    return x.index_copy(0, idx, blurred)


def solarize(x: Tensor, mask: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels >= ``threshold`` in the selected samples (BYOL / PIL ImageOps.solarize)."""
    m = mask.to(x.device).view(-1, 1, 1, 1)
    return torch.where(m & (x >= threshold), 1.0 - x, x)


def normalize(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """(x - mean) / std per channel; ``mean``/``std`` are (3,) tensors."""
    m = mean.to(x.device, x.dtype).view(1, -1, 1, 1)
    s = std.to(x.device, x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
