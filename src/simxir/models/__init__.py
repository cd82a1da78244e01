"""Backbones (torchvision-named ResNets, a small ConvNet, ViTs) and encoder files: the checkpoint
layouts of other toolchains (``layouts``), reading them (``extract``, ``load``) and writing them
(``export``)."""

from simxir.models.backbones import ARCHS, ConvNetSmall, ResNet, build_backbone
from simxir.models.export import export_encoder, save_encoder, verify_export
from simxir.models.layouts import FORMATS
from simxir.models.load import LoadReport, infer_arch, load_encoder

__all__ = ["ARCHS", "FORMATS", "ConvNetSmall", "LoadReport", "ResNet", "build_backbone",
           "export_encoder", "infer_arch", "load_encoder", "save_encoder", "verify_export"]
