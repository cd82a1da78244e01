"""Checkpoint layouts of the SSL toolchains: detect one, pull the online backbone out, write it back.

Every layout is reduced to a flat ``{torchvision_name: tensor}`` dict by stripping exactly one known
prefix with ``str.removeprefix``. Momentum/target/teacher copies (``encoder_k``,
``momentum_backbone``, ``teacher_backbone``, ``target_net`` ...) are never taken for the backbone.

Layouts (read from each project's source):

- ``torchvision``: a plain ResNet ``state_dict`` (``fc.*`` dropped), bare or as ``{"state_dict": ...}``,
  or with DDP's ``module.`` prefix; also the bridge/Barlow Twins code's final ``resnet50.pth``.
- ``simxir``: our safetensors files (metadata ``{"arch": ...}``), see ``checkpoint.save_encoder``;
  also simxir training checkpoints ``{"model": {backbone.*, projector.*, target_backbone.*},
  "config": ..., "history": ...}`` (``backbone.*`` taken).
- ``mmselfsup``: 0.x ``extract_backbone_weights.py`` output ``{"state_dict": {conv1.weight...},
  "author": "MMSelfSup"}``; 0.x training snapshots, where the backbone is registered twice
  (``encoder_q.0.*``/``online_net.0.*`` and ``backbone.*``: ``backbone.*`` is taken, the copies
  must agree); 1.x full models ``{"state_dict": {backbone.*, neck.*, head.*, target_net.*,
  encoder_k.*, queue...}, "meta": ...}``.
- ``mmpretrain``: the 1.x layout, told apart by "mmpretrain" in its ``meta``.
- ``solo-learn``: Lightning ``.ckpt`` ``state_dict`` with ``backbone.*``, ``projector.*``,
  ``classifier.*``, ``momentum_backbone.*`` (older releases: ``encoder.*``/``momentum_encoder.*``).
  Its CIFAR stem is a 3x3 conv with padding 2.
- ``lightly``: Lightning ``state_dict`` with ``backbone.*`` -- the torchvision ResNet itself in the
  ImageNet benchmarks (``backbone.conv1.weight``), or ``nn.Sequential(*ResNetGenerator.children()
  [:-1], AdaptiveAvgPool2d)`` in the CIFAR-10/Imagenette benchmarks (``backbone.0.weight`` = conv1,
  ``backbone.1`` = bn1, ``backbone.2..5`` = layer1..4, ``shortcut`` = downsample) --, plus
  ``projection_head.*``, ``teacher_backbone.*``/``backbone_momentum.*``, ``online_classifier.*``.
- ``moco``: official MoCo v1/v2 ``{"state_dict": {module.encoder_q.*, module.encoder_k.*,
  module.queue}}`` (``encoder_q.fc`` is the projection MLP: dropped); MoCo v3
  ``module.base_encoder.*``/``module.momentum_encoder.*``.
- ``simsiam``: official SimSiam ``{"state_dict": {module.encoder.*, module.predictor.*}}``
  (``encoder.fc`` is the projector: dropped).
- ``bridge``: the bridging paper's (Barlow Twins-derived) full checkpoint
  ``{"model": {module.backbone.*, module.projector.*, module.bn.*}, "optimizer": ...}``.
- ``vissl``: ``classy_state_dict.base_model.model.trunk`` with ``_feature_blocks.*`` keys
  (``_feature_blocks.conv1`` ... ``_feature_blocks.layer4``; heads dropped).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from simxir.errors import UserError

FORMATS: tuple[str, ...] = ("torchvision", "simxir", "mmselfsup", "mmpretrain", "solo-learn",
                            "lightly", "moco", "simsiam", "bridge", "vissl")

# Top-level key our exports add so that a re-load detects the same format even when the
# checkpoint holds nothing but the backbone (harmless to the original toolchains).
EXPORT_HINT = "simxir_export_format"

_MM_MARKERS = ("neck.", "head.", "encoder_q.", "encoder_k.", "online_net.", "target_net.",
               "queue", "data_preprocessor.")
_SOLO_MARKERS = ("projector.", "classifier.", "momentum_backbone.", "momentum_projector.",
                 "predictor.")
_LIGHTLY_MARKERS = ("projection_head.", "prediction_head.", "teacher_backbone.",
                    "student_backbone.", "backbone_momentum.", "online_classifier.",
                    "teacher_projection_head.", "student_projection_head.",
                    "projection_head_momentum.")
_LIGHTLY_SEQ = {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2", "4": "layer3",
                "5": "layer4"}
_MM_MIRRORS = ("encoder_q.0.", "online_net.0.")  # mmselfsup 0.x second registration


@dataclass
class Extracted:
    """The online backbone pulled out of a checkpoint, with everything needed to write it back."""

    format: str
    layout: str                                  # one-line description of what was found
    prefix: str                                  # the one prefix stripped ("" if none)
    tensors: dict[str, Tensor]                   # torchvision names -> tensors
    key_map: dict[str, str]                      # original key -> torchvision name
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    container_path: tuple[str, ...] = ()         # where the state dict sits in the file object


def _flat(obj: Any) -> dict[str, Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def find_state_dict(obj: Any, where: str) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Locate the flat tensor dict inside a checkpoint object; returns it and its key path."""
    if isinstance(obj, Mapping):
        if "classy_state_dict" in obj:
            try:
                trunk = obj["classy_state_dict"]["base_model"]["model"]["trunk"]
            except (KeyError, TypeError):
                raise UserError(f"{where}: vissl checkpoint without "
                                f"classy_state_dict.base_model.model.trunk") from None
            sd = _flat(trunk)
            if sd is None:
                raise UserError(f"{where}: vissl trunk is not a dict of tensors")
            return sd, ("classy_state_dict", "base_model", "model", "trunk")
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and _flat(obj[key]) is not None:
                return dict(obj[key]), (key,)
    sd = _flat(obj)
    if sd is not None:
        return sd, ()
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise UserError(f"{where}: no state_dict of tensors found (top level: {keys})")


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _meta_says_mmpretrain(obj: Any) -> bool:
    meta = obj.get("meta") if isinstance(obj, Mapping) else None
    return meta is not None and "mmpretrain" in repr(meta)


def detect_format(obj: Any, sd: dict[str, Tensor]) -> tuple[str, str]:
    """Name the layout of a loaded checkpoint: (format, prefix of the online backbone)."""
    keys = list(sd)
    hint = obj.get(EXPORT_HINT) if isinstance(obj, Mapping) else None
    if isinstance(hint, str) and hint in FORMATS:
        return hint, backbone_prefix(hint, obj, keys)
    if (isinstance(obj, Mapping) and {"model", "config", "history"} <= set(obj)
            and _has(keys, "backbone.")):
        return "simxir", "backbone."  # a simxir training checkpoint (simxir.train)
    if _has(keys, "_feature_blocks."):
        return "vissl", "_feature_blocks."
    if _has(keys, "module.encoder_q."):
        return "moco", "module.encoder_q."
    if _has(keys, "module.base_encoder."):
        return "moco", "module.base_encoder."
    if _has(keys, "module.encoder."):
        return "simsiam", "module.encoder."
    if _has(keys, "module.backbone."):
        return "bridge", "module.backbone."
    if isinstance(obj, Mapping) and obj.get("author") == "MMSelfSup":
        return "mmselfsup", ""
    if _has(keys, "backbone."):
        scores = {
            "lightly": sum(_has(keys, m) for m in _LIGHTLY_MARKERS) + ("backbone.0.weight" in sd),
            "solo-learn": sum(_has(keys, m) for m in _SOLO_MARKERS),
            "mmselfsup": sum(_has(keys, m) for m in _MM_MARKERS)
            + (isinstance(obj, Mapping) and "meta" in obj),
        }
        best = max(scores, key=lambda f: scores[f])
        if scores[best] == 0:  # nothing but backbone.*: use the container as a hint
            lightning = isinstance(obj, Mapping) and (
                "pytorch-lightning_version" in obj or "hyper_parameters" in obj)
            best = "solo-learn" if lightning else "mmselfsup"
        if best == "mmselfsup" and _meta_says_mmpretrain(obj):
            best = "mmpretrain"
        return best, "backbone."
    if _has(keys, "encoder.") and (_has(keys, "projector.") or _has(keys, "classifier.")
                                   or _has(keys, "momentum_encoder.")):
        return "solo-learn", "encoder."
    if "conv1.weight" in sd or "features.0.weight" in sd:
        return "torchvision", ""
    if "module.conv1.weight" in sd or "module.features.0.weight" in sd:
        return "torchvision", "module."  # state_dict of a DDP/DataParallel-wrapped model
    raise UserError(f"unrecognised checkpoint layout (first keys: {keys[:5]}); "
                    f"pass --format with one of {', '.join(FORMATS)}")


def backbone_prefix(fmt: str, obj: Any, keys: list[str]) -> str:
    """The prefix of the online backbone's keys for a format named by the user."""
    candidates = {
        "torchvision": ("", "module."), "simxir": ("backbone.", ""), "vissl": ("_feature_blocks.",),
        "moco": ("module.encoder_q.", "module.base_encoder."), "simsiam": ("module.encoder.",),
        "bridge": ("module.backbone.", ""), "mmselfsup": ("backbone.", ""),
        "mmpretrain": ("backbone.", ""), "solo-learn": ("backbone.", "encoder."),
        "lightly": ("backbone.",),
    }
    if fmt not in candidates:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    for p in candidates[fmt]:
        if p == "" and ("conv1.weight" in keys or "features.0.weight" in keys):
            return p
        if p and _has(keys, p):
            return p
    raise UserError(f"--format {fmt}: no backbone keys with prefix "
                    f"{' or '.join(repr(p) for p in candidates[fmt])} (first keys: {keys[:5]})")


def _lightly_name(name: str) -> str:
    """Map lightly's Sequential(ResNetGenerator) names to torchvision's."""
    head, _, rest = name.partition(".")
    if head not in _LIGHTLY_SEQ:
        return name
    return f"{_LIGHTLY_SEQ[head]}.{rest.replace('.shortcut.', '.downsample.')}" if rest else name


def extract(obj: Any, where: str, fmt: str | None = None) -> Extracted:
    """Pull the online backbone out of a loaded checkpoint object (``fmt`` overrides detection)."""
    sd, path = find_state_dict(obj, where)
    keys = list(sd)
    if fmt is None:
        fmt, prefix = detect_format(obj, sd)
    else:
        prefix = backbone_prefix(fmt, obj, keys)
    key_map: dict[str, str] = {}
    dropped: list[str] = []
    for k in keys:
        name = k.removeprefix(prefix) if (prefix == "" or k.startswith(prefix)) else None
        if name is None or name.startswith("fc.") or (prefix == "" and not _is_backbone_name(name)):
            dropped.append(k)
        else:
            key_map[k] = name
    notes: list[str] = []
    sequential = fmt == "lightly" and any(n.startswith("0.") for n in key_map.values())
    if sequential:
        key_map = {k: _lightly_name(n) for k, n in key_map.items()}
        notes.append("lightly Sequential(ResNetGenerator) layout renamed to torchvision names")
    tensors = {n: sd[k] for k, n in key_map.items()}
    if fmt == "lightly":
        tensors = _merge_split_bn(tensors, notes)
    if fmt in ("mmselfsup", "mmpretrain") and prefix == "backbone.":
        _check_mirrors(sd, tensors, where)
    layout = _describe(fmt, prefix, path, sequential)
    return Extracted(fmt, layout, prefix, tensors, key_map, dropped, notes, path)


def _is_backbone_name(name: str) -> bool:
    """For prefix-less layouts: keys that belong to a backbone (everything else is dropped)."""
    return bool(re.match(r"(conv1|bn1|layer\d+|features)\.", name))


def _check_mirrors(sd: dict[str, Tensor], tensors: dict[str, Tensor], where: str) -> None:
    for mirror in _MM_MIRRORS:
        copies = {k.removeprefix(mirror): v for k, v in sd.items() if k.startswith(mirror)}
        shared = [n for n in tensors if n in copies]
        if not shared:
            continue
        bad = [n for n in shared if copies[n].shape != tensors[n].shape
               or not torch.equal(copies[n], tensors[n])]
        if bad:
            raise UserError(f"{where}: mmselfsup backbone.* and {mirror}* disagree on {len(bad)} "
                            f"tensors (first: {bad[0]}); the checkpoint is inconsistent")


def _merge_split_bn(tensors: dict[str, Tensor], notes: list[str]) -> dict[str, Tensor]:
    """lightly's SplitBatchNorm keeps running stats per split (C * k): average them to C."""
    out = dict(tensors)
    merged = 0
    for name, t in tensors.items():
        if not name.endswith((".running_mean", ".running_var")):
            continue
        w = tensors.get(name.rsplit(".", 1)[0] + ".weight")
        if w is not None and t.dim() == 1 and t.numel() > w.numel() and t.numel() % w.numel() == 0:
            out[name] = t.view(-1, w.numel()).mean(0)
            merged += 1
    if merged:
        notes.append(f"averaged {merged} SplitBatchNorm running statistics over their splits")
    return out


def _describe(fmt: str, prefix: str, path: tuple[str, ...], sequential: bool) -> str:
    where = ".".join(path) if path else "top level"
    extra = ", lightly Sequential layout" if sequential else ""
    return f"{fmt} ({where}, prefix {prefix!r}{extra})"


# ---------------------------------------------------------------- writing back

def _torchvision_arch(arch: str) -> str:
    return arch.removesuffix("-cifar")


def wrap(sd: dict[str, Tensor], fmt: str, arch: str) -> Any:
    """The file object of format ``fmt`` holding only the backbone ``sd`` (torchvision names)."""
    pre = {  # format -> (prefix, container)
        "torchvision": ("", None), "mmselfsup": ("", "state_dict"),
        "mmpretrain": ("backbone.", "state_dict"), "solo-learn": ("backbone.", "state_dict"),
        "lightly": ("backbone.", "state_dict"), "moco": ("module.encoder_q.", "state_dict"),
        "simsiam": ("module.encoder.", "state_dict"), "bridge": ("module.backbone.", "model"),
        "vissl": ("_feature_blocks.", None),
    }
    if fmt not in pre:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    prefix, container = pre[fmt]
    inner = {prefix + k: v for k, v in sd.items()}
    if fmt == "torchvision":
        return inner
    if fmt == "vissl":
        return {"classy_state_dict": {"base_model": {"model": {"trunk": inner, "heads": {}}}}}
    obj: dict[str, Any] = {container: inner}
    if fmt == "mmselfsup":
        obj["author"] = "MMSelfSup"
    elif fmt == "mmpretrain":
        obj["meta"] = {"mmpretrain_version": "exported by simxir"}
    elif fmt in ("moco", "simsiam"):
        obj["arch"] = _torchvision_arch(arch)
    elif fmt in ("solo-learn", "lightly", "bridge"):
        obj[EXPORT_HINT] = fmt  # backbone-only: otherwise indistinguishable on re-load
    return obj


def wrap_into_template(sd: dict[str, Tensor], template: Any, where: str,
                       fmt: str | None) -> tuple[Any, str]:
    """Replace the online backbone (and its mirrors) inside a copy of the template checkpoint."""
    ex = extract(template, where, fmt)
    missing = sorted(set(ex.key_map.values()) - set(sd))
    extra = sorted(set(sd) - set(ex.key_map.values()))
    if missing or extra:
        raise UserError(f"{where}: template backbone does not match the model "
                        f"(missing in model: {missing[:3]}, not in template: {extra[:3]})")
    old, _ = find_state_dict(template, where)
    new = dict(old)
    for key, name in ex.key_map.items():
        new[key] = _fit(sd[name], old[key], key, where)
        if ex.format in ("mmselfsup", "mmpretrain") and ex.prefix == "backbone.":
            for mirror in _MM_MIRRORS:
                if mirror + name in new:
                    new[mirror + name] = new[key]
    return _put(template, ex.container_path, new), ex.format


def _fit(t: Tensor, old: Tensor, key: str, where: str) -> Tensor:
    t = t.detach().to("cpu", old.dtype)
    if t.shape == old.shape:
        return t
    if t.dim() == 1 and old.dim() == 1 and old.numel() % t.numel() == 0:  # split-BN stats
        return t.repeat(old.numel() // t.numel())
    raise UserError(f"{where}: template tensor {key} has shape {tuple(old.shape)}, "
                    f"model has {tuple(t.shape)}")


def _put(obj: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    out = dict(obj)
    out[path[0]] = _put(obj[path[0]], path[1:], value)
    return out
