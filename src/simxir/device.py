"""Device and precision defaults: use a GPU when present, bf16 and channels_last where they help."""

from __future__ import annotations

import torch

from simxir.errors import UserError


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast is fast on ``device``: native bf16 on CUDA (Ampere and newer; not the
    emulation V100/T4 offer), or a CPU with AVX512-BF16/AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        fn = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool((fn and fn()) or (amx and amx()))
    return False


def parse_device(text: str, option: str = "device") -> torch.device:
    """``auto`` (cuda when available, else cpu), ``cpu``, ``cuda`` or ``cuda:N``; a UserError naming
    ``option`` for anything else, or for CUDA on a machine without it."""
    if text == "auto":
        return default_device()
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise UserError(f"{option}: expected auto, cpu, cuda or cuda:N, got {text!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{option}: {text!r} requested but CUDA is not available")
    return dev
