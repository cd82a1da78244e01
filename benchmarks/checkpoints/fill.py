"""The deterministic weights the checkpoint verifications and their test fixtures share: every tensor of a
state dict, in the stored key order, drawn from one seeded generator (BN statistics positive)."""

from __future__ import annotations

import math

import torch


def fill(shapes: list[tuple[str, list[int]]], seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, shape in shapes:
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(0, dtype=torch.long)
        elif name.endswith("running_var"):
            out[name] = torch.rand(shape, generator=g) * 0.5 + 0.5
        elif name.endswith("running_mean"):
            out[name] = torch.randn(shape, generator=g) * 0.1
        elif len(shape) == 1 and name.endswith("weight"):
            out[name] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            out[name] = 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            out[name] = torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in)
    return out
