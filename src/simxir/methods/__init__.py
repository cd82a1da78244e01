"""SSL methods (heads + losses) behind one contract; see ``base.Method`` and ``build_method``."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from torch import nn

from simxir.config import ConfigError, from_dict, to_dict
from simxir.errors import UserError
from simxir.methods.barlow_twins import (
    BarlowTwins,
    BarlowTwinsConfig,
    barlow_twins_loss,
)
from simxir.methods.base import Method, cosine_tau, ema_update_
from simxir.methods.bridge import Bridge, BridgeConfig, bridge_loss
from simxir.methods.byol import BYOL, BYOLConfig, byol_loss
from simxir.methods.dino import DINO, DINOConfig, dino_loss
from simxir.methods.moco import MoCo, MoCoConfig, infonce_loss
from simxir.methods.simclr import SimCLR, SimCLRConfig, nt_xent_loss
from simxir.methods.simsiam import SimSiam, SimSiamConfig, simsiam_loss
from simxir.methods.simxir import SimXIR, SimXIRConfig, simxir_loss
from simxir.methods.vicreg import VICReg, VICRegConfig, vicreg_loss

METHODS: dict[str, type[Method]] = {
    cls.name: cls
    for cls in (BYOL, SimSiam, BarlowTwins, VICReg, MoCo, SimCLR, Bridge, DINO, SimXIR)
}
CONFIGS: dict[str, type] = {name: cls.config_cls for name, cls in METHODS.items()}
# the methods that train an encoder from scratch (``simxir pretrain``); the others fine-tune one
PRETRAIN_METHODS: tuple[str, ...] = tuple(name for name, cls in METHODS.items() if not cls.fine_tunes)


def build_method(name: str, backbone: nn.Module, cfg: Any = None) -> Method:
    """Build method ``name`` around ``backbone``.

    ``cfg`` is the method's config dataclass, a mapping of its fields (checked like a recipe),
    or None for the defaults.
    """
    if name not in METHODS:
        raise UserError(f"method {name!r}: expected one of {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    cfg_cls = CONFIGS[name]
    if cfg is None:
        cfg = cfg_cls()
    elif isinstance(cfg, dict):
        try:
            cfg = from_dict(cfg_cls, cfg, prefix=f"{name}.")
        except ConfigError as exc:
            raise UserError(f"method config: {exc}") from None
    elif not (dataclasses.is_dataclass(cfg) and isinstance(cfg, cfg_cls)):
        raise UserError(f"method {name!r} config: expected {cfg_cls.__name__}, got {type(cfg).__name__}")
    for f in dataclasses.fields(cfg):   # layer widths: a negative or zero size is a typo, not a network
        v = getattr(cfg, f.name)
        if f.name.endswith(("_dim", "_hidden")) and isinstance(v, int) and not isinstance(v, bool) and v < 1:
            raise UserError(f"method.{f.name}: expected a positive width, got {v}")
    return cls(backbone, cfg)


__all__ = [
    "BYOL", "BYOLConfig", "DINO", "DINOConfig", "BarlowTwins", "BarlowTwinsConfig", "Bridge", "BridgeConfig",
    "CONFIGS", "METHODS",
    "Method", "MoCo", "MoCoConfig", "PRETRAIN_METHODS", "SimCLR", "SimCLRConfig", "SimSiam",
    "SimSiamConfig", "SimXIR", "SimXIRConfig", "VICReg", "VICRegConfig", "barlow_twins_loss", "bridge_loss",
    "build_method", "byol_loss", "cosine_tau", "dino_loss", "ema_update_", "infonce_loss", "nt_xent_loss",
    "simsiam_loss", "simxir_loss", "vicreg_loss",
]


def methods_info() -> dict[str, Any]:
    """The ``simxir methods --json`` object: {"methods": {name: {"summary", "config"}}}."""
    out: dict[str, Any] = {}
    for name, cls in METHODS.items():
        module_doc = (sys.modules[cls.__module__].__doc__ or "").strip()
        out[name] = {"summary": " ".join(module_doc.split()),
                     "config": to_dict(CONFIGS[name]()),
                     "train_defaults": cls.train_defaults,
                     "views": {"global_crops": list(cls.global_crops) if cls.global_crops else "any",
                               "local_crops": cls.local_crops}}
    return {"methods": out}
