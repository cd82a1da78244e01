"""Backbones (torchvision-named ResNets, a small ConvNet) and encoder checkpoint import/export."""

from simxir.models.backbones import ARCHS, ConvNetSmall, ResNet, build_backbone

__all__ = ["ARCHS", "ConvNetSmall", "ResNet", "build_backbone"]
