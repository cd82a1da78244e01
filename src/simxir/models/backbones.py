"""Backbones: torchvision-named ResNets (ImageNet and CIFAR stems) and a small CPU ConvNet.

The ResNets reproduce torchvision's architecture, parameter/buffer names and weight init exactly
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0`` ...) without the ``fc`` head:
``forward`` returns the globally pooled features. The ``-cifar`` variants use a 3x3 stride-1
``conv1`` and no max-pool (as in SimSiam/SimXIR CIFAR experiments and solo-learn).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from simxir.errors import UserError
from simxir.models.vit import VIT_SIZES, VisionTransformer, parse_vit

# depth -> (block type, blocks per stage)
RESNET_LAYOUTS: dict[int, tuple[str, tuple[int, int, int, int]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
}

ARCHS: tuple[str, ...] = (
    "resnet18", "resnet34", "resnet50", "resnet101",
    "resnet18-cifar", "resnet34-cifar", "resnet50-cifar", "resnet101-cifar",
    "convnet-small",
    *(f"vit-{size}{suffix}" for size in VIT_SIZES for suffix in ("", "-cifar")),
)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convs, identity or 1x1 projection shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(cin, width, stride)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(width, width)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's Bottleneck (ResNet v1.5: stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv1x1(cin, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv1x1(width, width * self.expansion)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A torchvision ResNet without ``fc``; ``forward`` returns (N, feature_dim) pooled features."""

    def __init__(self, depth: int, cifar_stem: bool = False, zero_init_residual: bool = False):
        super().__init__()
        if depth not in RESNET_LAYOUTS:
            raise UserError(f"resnet depth {depth}: expected one of {sorted(RESNET_LAYOUTS)}")
        kind, blocks = RESNET_LAYOUTS[depth]
        block: type[BasicBlock] | type[Bottleneck] = BasicBlock if kind == "basic" else Bottleneck
        self.arch = f"resnet{depth}" + ("-cifar" if cifar_stem else "")
        self.depth = depth
        self.cifar_stem = cifar_stem
        self.inplanes = 64
        if cifar_stem:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, 64, blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 128, blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 256, blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 512, blocks[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = 512 * block.expansion

        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], width: int, n: int,
                    stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != width * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, width * block.expansion, stride),
                nn.BatchNorm2d(width * block.expansion),
            )
        layers = [block(self.inplanes, width, stride, downsample)]
        self.inplanes = width * block.expansion
        layers += [block(self.inplanes, width) for _ in range(1, n)]
        return nn.Sequential(*layers)

    @property
    def stem_relu(self) -> bool:
        """Whether the stem applies a ReLU after ``bn1`` (torchvision's does; lightly's
        ``nn.Sequential(*ResNetGenerator.children()[:-1])`` does not, its ReLU is functional)."""
        return not isinstance(self.relu, nn.Identity)

    @stem_relu.setter
    def stem_relu(self, on: bool) -> None:
        self.relu = nn.ReLU(inplace=True) if on else nn.Identity()

    def network(self) -> str:
        """The stem's semantics in one line (what ``simxir inspect-encoder`` reports)."""
        c = self.conv1
        pool = "max-pool 3x3/2" if isinstance(self.maxpool, nn.MaxPool2d) else "no max-pool"
        relu = "ReLU after bn1" if self.stem_relu else "no ReLU after bn1"
        return (f"stem conv {c.kernel_size[0]}x{c.kernel_size[1]}/{c.stride[0]} padding {c.padding[0]}, "
                f"{relu}, {pool}")

    def forward_stem(self, x: Tensor) -> Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_maps(self, x: Tensor) -> Tensor:
        """The layer4 feature map (N, feature_dim, h, w) before pooling."""
        x = self.forward_stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.avgpool(self.forward_maps(x)), 1)


class ConvNetSmall(nn.Module):
    """A small fast CNN for CPU runs on 8x8..32x32 images: 4 conv-BN-ReLU, global pool, 128-d."""

    def __init__(self, width: int = 32, feature_dim: int = 128):
        super().__init__()
        self.arch = "convnet-small"
        self.feature_dim = feature_dim
        chans = [3, width, width * 2, width * 4, feature_dim]
        strides = [1, 2, 2, 1]
        layers: list[nn.Module] = []
        for cin, cout, s in zip(chans[:-1], chans[1:], strides):
            layers += [nn.Conv2d(cin, cout, 3, stride=s, padding=1, bias=False),
                       nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.avgpool(self.features(x)), 1)


def build_backbone(name: str, zero_init_residual: bool = False, **vit_options: Any) -> nn.Module:
    """Build a backbone by name (see ``ARCHS``); the module has ``.feature_dim`` and ``.arch``.
    ``vit_options`` (ViTs only): ``registers``, ``layer_scale``, ``representation``, ``attn``, ``drop_path``."""
    vit = parse_vit(name)
    if vit is not None:
        return VisionTransformer(**vit, **vit_options)
    if vit_options:
        raise UserError(f"backbone {name!r}: {', '.join(sorted(vit_options))} only apply to ViT backbones")
    if name == "convnet-small":
        return ConvNetSmall()
    base, _, suffix = name.partition("-")
    if base.startswith("resnet") and base[6:].isdigit() and suffix in ("", "cifar"):
        depth = int(base[6:])
        if depth in RESNET_LAYOUTS:
            return ResNet(depth, cifar_stem=suffix == "cifar", zero_init_residual=zero_init_residual)
    raise UserError(f"backbone {name!r}: expected one of {', '.join(ARCHS)}")
