"""Shared fixtures: a small backbone and random view pairs."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class TinyBackbone(nn.Module):
    """A conv + BN + pooling encoder with ``.feature_dim`` (stands in for any backbone)."""

    def __init__(self, feature_dim: int = 24) -> None:
        super().__init__()
        self.feature_dim = feature_dim
        self.arch = "tiny-test"
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, feature_dim, 3, padding=1, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def small_backbone() -> nn.Module:
    """The project's "convnet-small" when the models package provides it, else TinyBackbone."""
    try:
        from simxir.models import build_backbone

        return build_backbone("convnet-small")
    except Exception:  # noqa: BLE001 - the models package may be mid-edit
        return TinyBackbone()


@pytest.fixture
def views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 16, 16, generator=g)
    return x, x + 0.3 * torch.randn(8, 3, 16, 16, generator=g)


@pytest.fixture
def tiny() -> type[TinyBackbone]:
    """The TinyBackbone class (call it to get a fresh backbone)."""
    return TinyBackbone


@pytest.fixture
def backbone() -> nn.Module:
    """A fresh TinyBackbone (fast)."""
    return TinyBackbone()


@pytest.fixture
def convnet_small() -> nn.Module:
    """A fresh "convnet-small" from simxir.models (TinyBackbone if that package is unavailable)."""
    return small_backbone()
