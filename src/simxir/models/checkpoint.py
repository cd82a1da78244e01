"""Encoder checkpoints: load any supported SSL toolchain's file strictly, save/export ours.

``load_encoder`` detects the layout (see ``simxir.models.formats``), infers the architecture from
the tensors, builds the backbone and loads every tensor with a matching shape -- or raises a
``UserError`` naming what was missing, mismatched or unexpected. The ``LoadReport`` says what was
loaded, dropped and defaulted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save
from torch import Tensor, nn

from simxir.errors import UserError
from simxir.io import atomic_save, atomic_write_bytes, load_checkpoint, require_file
from simxir.models.backbones import RESNET_LAYOUTS, build_backbone
from simxir.models.formats import (
    BY_NAME,
    Extracted,
    extract,
    layout,
    wrap,
    wrap_into_template,
)
from simxir.models.vit import VIT_SIZES, VisionTransformer, vit_options_from_state

_DEPTHS = {(n[2], kind == "bottleneck"): d for d, (kind, n) in RESNET_LAYOUTS.items()}


@dataclass
class LoadReport:
    """What ``load_encoder`` did: detected format and arch, loaded/dropped/defaulted keys."""

    path: str
    format: str
    layout: str
    arch: str
    prefix: str
    loaded: list[str]
    dropped: list[str]
    missing: list[str] = field(default_factory=list)   # tolerated: num_batches_tracked only
    notes: list[str] = field(default_factory=list)
    network: str = ""       # the loaded backbone's stem semantics (ResNets), as the source computed it

    def summary(self) -> str:
        lines = [f"{self.path}: {self.format} checkpoint -> {self.arch}, loaded "
                 f"{len(self.loaded)} tensors (prefix {self.prefix!r})"]
        if self.dropped:
            groups: dict[str, int] = {}
            for k in self.dropped:
                parts = k.split(".")
                g = ".".join(parts[:2]) if parts[0] == "module" and len(parts) > 2 else parts[0]
                groups[g] = groups.get(g, 0) + 1
            lines.append(f"  dropped {len(self.dropped)}: "
                         + ", ".join(f"{g}.* ({n})" for g, n in groups.items()))
        else:
            lines.append("  dropped 0")
        lines.append(f"  missing {len(self.missing)}"
                     + (f" (defaulted: {', '.join(self.missing[:3])}...)" if self.missing else ""))
        if self.network:
            lines.append(f"  network: {self.network}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def infer_arch(sd: dict[str, Tensor], where: str = "checkpoint") -> str:
    """Architecture name from backbone tensors: layer3 block count + conv3 -> depth; 3x3 conv1 -> cifar."""
    if "features.0.weight" in sd:
        return "convnet-small"
    if "conv1.weight" not in sd or sd["conv1.weight"].dim() != 4:
        raise UserError(f"{where}: no conv1.weight among the backbone tensors; cannot infer the "
                        f"architecture, pass --backbone")
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("layer3.") and k.split(".")[1].isdigit()}
    bottleneck = any(k.startswith("layer1.") and ".conv3." in k for k in sd)
    n3 = max(blocks) + 1 if blocks else 0
    depth = _DEPTHS.get((n3, bottleneck))
    if depth is None:
        raise UserError(f"{where}: layer3 has {n3} {'bottleneck' if bottleneck else 'basic'} "
                        f"blocks, not a ResNet-18/34/50/101; pass --backbone")
    k = sd["conv1.weight"].shape[-1]
    if k not in (3, 7):
        raise UserError(f"{where}: conv1 is {k}x{k}, expected 7x7 (ImageNet) or 3x3 (CIFAR stem)")
    return f"resnet{depth}" + ("-cifar" if k == 3 else "")


def _read(path: Path, allow_pickle: bool) -> tuple[Any, dict[str, str] | None]:
    """The checkpoint object and, for safetensors files, their metadata."""
    if path.suffix == ".safetensors":
        require_file(path, "a .safetensors encoder file", noun="checkpoint file")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
            raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
        return tensors, meta
    return load_checkpoint(path, allow_pickle=allow_pickle), None


def load_encoder(path: str | Path, backbone: str | None = None, format: str | None = None,
                 allow_pickle: bool = False) -> tuple[nn.Module, LoadReport]:
    """Load the online backbone of a checkpoint (any supported format) into our architecture.

    ``backbone`` overrides the inferred arch, ``format`` the detected layout. Strict: every
    backbone tensor must be present with the right shape (``num_batches_tracked`` may be absent).
    """
    path = Path(path)
    if format is not None:
        layout(format)
    obj, meta = _read(path, allow_pickle)
    where = str(path)
    if meta is not None and "arch" in meta and format in (None, "simxir"):
        ex = Extracted("simxir", "simxir (safetensors)", "", dict(obj), {k: k for k in obj})
        if "patch_embed.proj.weight" not in obj:      # a ViT's shape is read from its tensors
            backbone = backbone or meta["arch"]
    else:
        ex = extract(obj, where, format)
    if backbone is None and "patch_embed.proj.weight" in ex.tensors:   # a ViT: its shape is in its tensors
        opts = vit_options_from_state(ex.tensors, where)
        arch = opts["arch"]
        m = meta or {}
        net = {"pos_offset": float(m.get("pos_offset", 0.0)), "pos_antialias": m.get("pos_antialias", "true") == "true",
               "heads": int(m["heads"]) if "heads" in m else None,
               **{k: v for k, v in ex.network.items() if k.startswith("pos_") or k == "heads"}}
        model: nn.Module = VisionTransformer(**opts, representation=m.get("representation", "cls"), **net)
    else:
        arch = backbone or infer_arch(ex.tensors, where)
        model = build_backbone(arch)
    expected = model.state_dict()
    missing = [k for k in expected if k not in ex.tensors]
    tolerated = [k for k in missing if k.endswith("num_batches_tracked")]
    hard = [k for k in missing if k not in tolerated]
    mismatched = [f"{k} {tuple(ex.tensors[k].shape)}!={tuple(v.shape)}"
                  for k, v in expected.items() if k in ex.tensors and ex.tensors[k].shape != v.shape]
    unexpected = [k for k in ex.tensors if k not in expected]
    if hard or mismatched or unexpected:
        parts = [f"{name} {len(lst)} (e.g. {', '.join(lst[:3])})"
                 for name, lst in (("missing", hard), ("shape-mismatched", mismatched),
                                   ("unexpected", unexpected)) if lst]
        raise UserError(f"{where}: {ex.format} backbone does not fit {arch}: " + "; ".join(parts))
    bad = [k for k, v in ex.tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{where}: {len(bad)} backbone tensors hold NaN or inf (first: {bad[0]}); the encoder "
                        f"cannot be evaluated or trained (was it saved from a diverged run?)")
    model.load_state_dict({k: v for k, v in ex.tensors.items()}, strict=False)
    notes = list(ex.notes)
    if tolerated:
        notes.append(f"{len(tolerated)} num_batches_tracked buffers absent, left at 0")
    padding = _stem_padding(ex, meta, arch)
    if padding is not None:
        model.conv1.padding = (padding, padding)
        notes.append(f"conv1 padding set to {padding} as in the source (simxir's -cifar stem uses 1)")
    stem_relu = ex.network.get("stem_relu", (meta or {}).get("stem_relu", "true") != "false")
    if not stem_relu:
        if not hasattr(model, "stem_relu"):
            raise UserError(f"{where}: the source network has no ReLU after bn1, which {arch} cannot express")
        model.stem_relu = False
        notes.append("no ReLU after bn1, as in the source network (simxir's ResNet stem has one by default)")
    network = model.network() if hasattr(model, "network") else ""
    report = LoadReport(where, ex.format, ex.layout, arch, ex.prefix, list(ex.tensors),
                        ex.dropped, tolerated, notes, network)
    return model, report


def _stem_padding(ex: Extracted, meta: dict[str, str] | None, arch: str) -> int | None:
    """The source's CIFAR stem padding where it is not ours (solo-learn's Conv2d(3, 64, 3, padding=2))."""
    if meta is not None and "conv1_padding" in meta:
        return int(meta["conv1_padding"])
    padding = BY_NAME[ex.format].cifar_stem_padding
    return padding if arch.endswith("-cifar") and padding not in (None, 1) else None


def _check_stem_fits(model: nn.Module, format: str) -> None:
    """Refuse an export whose stem the target's own model would rebuild differently.

    solo-learn builds its CIFAR stem with padding 2 and the other layouts' models (torchvision
    names) with padding 1; only simxir's own file records the padding. The same weights under
    another padding compute other features, so such an export is an error, not a silent change."""
    lay = BY_NAME[format]
    if not getattr(model, "stem_relu", True) and format != "simxir" and lay.names_without_stem_relu is None:
        raise UserError(f"--to {format}: this encoder has no ReLU after bn1 (lightly's ResNetGenerator "
                        f"stem), but {format}'s model applies one there, so the exported weights would "
                        f"compute different features; export to simxir or lightly instead")
    conv1 = getattr(model, "conv1", None)
    want = lay.cifar_stem_padding
    if want is None or not str(getattr(model, "arch", "")).endswith("-cifar") \
            or not isinstance(conv1, nn.Conv2d):
        return
    have = conv1.padding[0]
    if have != want:
        raise UserError(f"--to {format}: this encoder's CIFAR stem has conv1 padding {have}, but "
                        f"{format}'s model builds it with padding {want}, so the exported weights "
                        f"would compute different features there; export to "
                        f"{'simxir or solo-learn' if have == 2 else 'simxir, torchvision or the other layouts'}"
                        f" instead")


@torch.no_grad()
def max_feature_difference(a: nn.Module, b: nn.Module, image_size: int = 32, seed: int = 0) -> float:
    """Largest absolute difference of two backbones' features on one seeded random batch (eval mode)."""
    x = torch.randn(4, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    modes = (a.training, b.training)
    a.eval()
    b.eval()
    try:
        return float((a(x).float() - b(x).float()).abs().max())
    finally:
        a.train(modes[0])
        b.train(modes[1])


def verify_export(model: nn.Module, path: str | Path, format: str, allow_pickle: bool = False
                  ) -> tuple[LoadReport, float]:
    """Re-load an export and check that it holds the same tensors AND computes the same features
    (the stem's padding is not in any state_dict); returns (load report, max feature difference)."""
    model = _unwrap(model)
    back, report = load_encoder(path, backbone=str(model.arch), format=format, allow_pickle=allow_pickle)
    ref = model.state_dict()
    if not all(torch.equal(v, ref[k]) for k, v in back.state_dict().items()):
        raise UserError(f"{path}: re-loading the export gave different tensors")
    size = 64 if not str(model.arch).endswith("-cifar") and str(model.arch).startswith("resnet") else 32
    diff = max_feature_difference(model.to("cpu"), back, image_size=size)
    if diff > 1e-5:
        raise UserError(f"{path}: re-loading the export computes different features (max difference "
                        f"{diff:.3g}); the {format} layout cannot hold this encoder as it is")
    return report, diff


def _unwrap(model: nn.Module) -> nn.Module:
    """The bare backbone behind DDP (``.module``), ``torch.compile`` (``._orig_mod``) or a Method."""
    for _ in range(4):
        if isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif not hasattr(model, "arch") and isinstance(getattr(model, "backbone", None), nn.Module):
            model = model.backbone
    if not hasattr(model, "arch"):
        raise UserError("model: expected a simxir backbone (with .arch), e.g. from build_backbone")
    return model


def _cpu_state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_encoder(model: nn.Module, path: str | Path) -> None:
    """Write the backbone as safetensors with metadata ``{"arch": ..., "format": "simxir"}`` (atomic)."""
    model = _unwrap(model)
    meta = {"arch": str(model.arch), "format": "simxir",
            "feature_dim": str(getattr(model, "feature_dim", ""))}
    conv1 = getattr(model, "conv1", None)
    if isinstance(conv1, nn.Conv2d) and conv1.kernel_size == (3, 3) and conv1.padding != (1, 1):
        meta["conv1_padding"] = str(conv1.padding[0])
    if not getattr(model, "stem_relu", True):
        meta["stem_relu"] = "false"
    if isinstance(model, VisionTransformer):
        meta.update(representation=model.representation, pos_offset=str(model.pos_offset),
                    pos_antialias=str(model.pos_antialias).lower(), heads=str(model.heads))
    atomic_write_bytes(path, save(_cpu_state(model), metadata=meta))


def export_encoder(model: nn.Module, path: str | Path, format: str,
                   template: str | Path | dict | None = None, allow_pickle: bool = False) -> str:
    """Write the backbone in another toolchain's layout so it loads back there; returns the format.

    Without ``template`` the file holds only the backbone in that layout (e.g. solo-learn
    ``{"state_dict": {"backbone.*"}}``, moco ``{"state_dict": {"module.encoder_q.*"}}``). With a
    template (the original checkpoint, path or loaded object) a copy of it is written with the
    online backbone (and mmselfsup's mirrored copy) replaced; heads and momentum copies are kept.
    """
    lay = layout(format)
    model = _unwrap(model)
    is_vit = isinstance(model, VisionTransformer)
    if format != "simxir" and lay.vit is not None and lay.vit != is_vit:
        what = "ViT" if lay.vit else "ResNet/ConvNet"
        raise UserError(f"--format {format}: a {what} layout; {model.arch} cannot be written in it")
    if format != "simxir" and is_vit:
        heads = lay.vit_heads or VIT_SIZES[model.size][2]
        if model.heads != heads:
            raise UserError(f"--format {format}: its {model.arch} has {heads} attention heads, this encoder "
                            f"{model.heads}, so the exported weights would compute different features there; "
                            f"export to simxir instead")
    _check_stem_fits(model, format)
    if format == "simxir":
        save_encoder(model, path)
        return format
    sd = _cpu_state(model)
    if template is not None:
        where = str(template) if not isinstance(template, dict) else "template"
        obj = template if isinstance(template, dict) else load_checkpoint(template, allow_pickle)
        out, format = wrap_into_template(sd, obj, where, format)
    else:
        out = wrap(sd, format, str(model.arch), stem_relu=getattr(model, "stem_relu", True))
    atomic_save(out, path)
    return format
