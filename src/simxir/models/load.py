"""Loading an encoder file of any supported layout into our architecture, strictly.

``load_encoder`` reads the file, pulls the online backbone out (:mod:`simxir.models.extract`), infers
the architecture from the tensors, builds the backbone and loads every tensor with a matching shape
-- or raises a ``UserError`` naming what was missing, mismatched or unexpected. The ``LoadReport``
says what was loaded, dropped and defaulted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from simxir.errors import UserError
from simxir.io import load_checkpoint, read_safetensors, require_file
from simxir.models import hf
from simxir.models.backbones import RESNET_LAYOUTS, build_backbone
from simxir.models.extract import Extracted, extract
from simxir.models.layouts import BY_NAME, layout
from simxir.models.vit import VisionTransformer, vit_options_from_state

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
    preprocess: dict[str, Any] | None = None   # the mean/std (and size) the checkpoint was trained with, if known

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
        if self.preprocess:
            p = self.preprocess
            lines.append(f"  preprocessing: mean {list(p['mean'])}, std {list(p['std'])}"
                         + (f", {p['size']} px" if p.get("size") else "") + f" ({p['source']})")
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
        return read_safetensors(path)
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
    folder = hf.folder_of(path) if format in (None, "transformers") else None
    if folder is not None:
        return _load_transformers(path, folder, backbone, allow_pickle)
    if path.is_dir():
        raise UserError(f"{path}: is a directory without {hf.CONFIG}; expected a checkpoint file or a "
                        f"transformers model folder (save_pretrained)")
    obj, meta = _read(path, allow_pickle)
    where = str(path)
    if meta is not None and meta.get("format") == "module":
        raise UserError(f"{where}: the state_dict of a user's own module ({meta.get('class', '?')}), not one of "
                        f"simxir's backbones; load it with YourModule().load_state_dict("
                        f"safetensors.torch.load_file(path))")
    if meta is not None and "arch" in meta and format in (None, "simxir"):
        ex = Extracted("simxir", "simxir (safetensors)", "", dict(obj), {k: k for k in obj})
        if "patch_embed.proj.weight" not in obj:      # a ViT's shape is read from its tensors
            backbone = backbone or meta["arch"]
    else:
        if format in (None, "transformers") and isinstance(obj, dict) and \
                BY_NAME["transformers"].detect.identify(obj, [str(k) for k in obj]):
            raise UserError(f"{where}: Hugging Face transformers weights need their {hf.CONFIG} beside them "
                            f"(pass the save_pretrained folder)")
        ex = extract(obj, where, format)
    return _build(ex, where, backbone, meta)


def _load_transformers(path: Path, folder: Path, backbone: str | None,
                       allow_pickle: bool) -> tuple[nn.Module, LoadReport]:
    where = str(path)
    cfg = hf.read_config(folder)
    sd = hf.read_weights(folder, path if path.is_file() else None, allow_pickle)
    tensors, network, dropped, family = hf.to_simxir(sd, cfg, where)
    ex = Extracted("transformers", f"transformers {family} ({hf.CONFIG} + weights)", "", tensors,
                   {k: k for k in tensors}, dropped, [], (), network)
    model, report = _build(ex, where, backbone, None)
    pre = hf.preprocessing(folder)
    if pre is not None:
        report.preprocess = pre
    return model, report


def _build(ex: Extracted, where: str, backbone: str | None,
           meta: dict[str, str] | None) -> tuple[nn.Module, LoadReport]:
    """Our backbone for the extracted tensors, strictly loaded, and its report."""
    if backbone is None and "patch_embed.proj.weight" in ex.tensors:   # a ViT: its shape is in its tensors
        opts = vit_options_from_state(ex.tensors, where)
        arch = opts["arch"]
        m = meta or {}
        net = {"pos_offset": float(m.get("pos_offset", 0.0)), "pos_antialias": m.get("pos_antialias", "true") == "true",
               "heads": int(m["heads"]) if "heads" in m else None, "norm_eps": float(m.get("norm_eps", 1e-6)),
               **{k: v for k, v in ex.network.items() if k.startswith("pos_") or k in ("heads", "norm_eps")}}
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
                        ex.dropped, tolerated, notes, network, known_preprocessing(ex.format, arch))
    return model, report


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def known_preprocessing(fmt: str, arch: str) -> dict[str, Any] | None:
    """The mean/std an encoder of another toolchain was trained with, where the layout tells: every
    toolchain read here normalises its ImageNet-size pipelines with ImageNet's statistics. None for
    simxir's own files (trained on the data's own statistics), CIFAR stems and convnet-small (their
    toolchains' CIFAR pipelines differ) and transformers folders (their preprocessor_config.json says)."""
    if fmt in ("simxir", "transformers") or arch.endswith("-cifar") or arch == "convnet-small":
        return None
    return {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "size": None,
            "source": f"the {fmt} layout's ImageNet pipelines (ImageNet mean/std)"}


def _stem_padding(ex: Extracted, meta: dict[str, str] | None, arch: str) -> int | None:
    """The source's CIFAR stem padding where it is not ours (solo-learn's Conv2d(3, 64, 3, padding=2))."""
    if meta is not None and "conv1_padding" in meta:
        return int(meta["conv1_padding"])
    padding = BY_NAME[ex.format].cifar_stem_padding
    return padding if arch.endswith("-cifar") and padding not in (None, 1) else None
