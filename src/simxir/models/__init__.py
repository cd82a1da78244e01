"""Backbones (torchvision-named ResNets, a small ConvNet) and encoder checkpoint import/export."""

from simxir.models.backbones import ARCHS, ConvNetSmall, ResNet, build_backbone
from simxir.models.checkpoint import LoadReport, export_encoder, infer_arch, load_encoder, save_encoder
from simxir.models.formats import FORMATS

__all__ = ["ARCHS", "FORMATS", "ConvNetSmall", "LoadReport", "ResNet", "build_backbone",
           "export_encoder", "infer_arch", "load_encoder", "save_encoder"]
