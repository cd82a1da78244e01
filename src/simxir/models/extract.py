"""Reading a loaded checkpoint object: find its state dict, name its layout (the stages of
:class:`simxir.models.layouts.Detect`) and pull the online backbone out under our names, as each
row of :data:`simxir.models.layouts.LAYOUTS` says."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from simxir.errors import UserError
from simxir.models.layouts import BY_NAME, EXPORT_HINT, FORMATS, LAYOUTS, layout


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
    network: dict[str, Any] = field(default_factory=dict)   # source semantics, e.g. {"stem_relu": False}


def _flat(obj: Any) -> dict[str, Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(
            isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()):
        return dict(obj)
    return None


def find_state_dict(obj: Any, where: str) -> tuple[dict[str, Tensor], tuple[str, ...]]:
    """Locate the flat tensor dict inside a checkpoint object; returns it and its key path: a
    layout's own ``Read.container`` first, then ``state_dict``, ``model``, ``model_state_dict``,
    then the file itself."""
    if isinstance(obj, Mapping):
        for lay in LAYOUTS:
            if lay.read.container:
                found = _follow(obj, lay.read.container)
                if found is not None:
                    return found
                if lay.read.container[0] in obj:
                    raise UserError(f"{where}: {lay.name} checkpoint without a dict of tensors at "
                                    f"{'.'.join(lay.read.container)}")
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and _flat(obj[key]) is not None:
                return dict(obj[key]), (key,)
    sd = _flat(obj)
    if sd is not None:
        return sd, ()
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise UserError(f"{where}: no state_dict of tensors found (top level: {keys})")


def _follow(obj: Any, path: tuple[str, ...]) -> tuple[dict[str, Tensor], tuple[str, ...]] | None:
    """The flat tensor dict at ``path`` (elements may be globs matching exactly one key), or None."""
    taken: list[str] = []
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        names = [k for k in obj if isinstance(k, str) and fnmatch.fnmatchcase(k, part)]
        if len(names) != 1:
            return None
        taken.append(names[0])
        obj = obj[names[0]]
    sd = _flat(obj)
    return (sd, tuple(taken)) if sd is not None else None


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _bare(keys: list[str], prefix: str) -> bool:
    """Whether torchvision (or timm ViT) backbone names sit directly under ``prefix``."""
    return any(f"{prefix}{k}" in keys for k in ("conv1.weight", "features.0.weight", "patch_embed.proj.weight"))


def detect_format(obj: Any, sd: dict[str, Tensor]) -> tuple[str, str]:
    """Name the layout of a loaded checkpoint: (format, prefix of the online backbone), by the stages
    :class:`simxir.models.layouts.Detect` lists."""
    keys = list(sd)
    top = obj if isinstance(obj, Mapping) else {}
    hint = top.get(EXPORT_HINT)
    if isinstance(hint, str) and hint in BY_NAME:
        return hint, backbone_prefix(hint, obj, keys)
    for lay in LAYOUTS:
        if lay.detect.identify is not None and lay.detect.identify(top, keys):
            return lay.name, backbone_prefix(lay.name, obj, keys)
    for lay in LAYOUTS:
        for p in lay.detect.unique:
            if _has(keys, p):
                return lay.name, p
    shared = [lay for lay in LAYOUTS if lay.detect.markers and "backbone." in lay.read.prefixes]
    if _has(keys, "backbone."):
        scores = {lay.name: lay.detect.score(top, keys) for lay in shared}
        best = max(scores, key=lambda n: scores[n])
        if scores[best]:
            return best, "backbone."
        for lay in LAYOUTS:
            if lay.detect.unmarked is not None and lay.detect.unmarked(top):
                return lay.name, "backbone."
    for lay in shared:
        for p in lay.read.prefixes:
            if p not in ("", "backbone.") and _has(keys, p) and lay.detect.score(top, keys):
                return lay.name, p
    for p in BY_NAME["torchvision"].read.prefixes:
        if _bare(keys, p):
            return "torchvision", p
    raise UserError(f"unrecognised checkpoint layout (first keys: {keys[:5]}); "
                    f"pass --format with one of {', '.join(FORMATS)}")


def backbone_prefix(fmt: str, obj: Any, keys: list[str]) -> str:
    """The prefix of the online backbone's keys for a format named by the user."""
    lay = layout(fmt)
    candidates = lay.read.prefixes
    # top-level names count once the layout's own renaming is applied (lightly's bare Sequential)
    names = list(lay.read.rename(keys)[0].values()) if lay.read.rename is not None else keys
    for p in candidates:
        if (p == "" and _bare(names, p)) or (p and _has(keys, p)):
            return p
    raise UserError(f"--format {fmt}: no backbone keys with prefix "
                    f"{' or '.join(repr(p) for p in candidates)} (first keys: {keys[:5]})")


def extract(obj: Any, where: str, fmt: str | None = None) -> Extracted:
    """Pull the online backbone out of a loaded checkpoint object (``fmt`` overrides detection)."""
    sd, path = find_state_dict(obj, where)
    keys = list(sd)
    if fmt is None:
        try:
            fmt, prefix = detect_format(obj, sd)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None   # the detector does not know the file's name
    else:
        prefix = backbone_prefix(fmt, obj, keys)
    lay = BY_NAME[fmt].read
    inside = {k: k.removeprefix(prefix) for k in keys if prefix == "" or k.startswith(prefix)}
    notes: list[str] = []
    source, network = "", {}
    if lay.rename is not None:
        renamed, source, network = lay.rename(list(inside.values()))
        inside = {k: renamed[n] for k, n in inside.items()}
        if source:
            notes.append(f"{fmt} {source}: renamed to torchvision names")
        if "heads" in network:
            notes.append(f"{fmt}'s ViT: {network['heads']} attention heads")
    key_map: dict[str, str] = {}
    dropped = [k for k in keys if k not in inside]
    for k, name in inside.items():
        if name.startswith(("fc.", "head.", *lay.drop)) or (prefix == "" and not _is_backbone_name(name)):
            dropped.append(k)
        else:
            key_map[k] = name
    tensors = {n: sd[k] for k, n in key_map.items()}
    if lay.split_bn:
        tensors = _merge_split_bn(tensors, notes)
    if lay.mirrors and prefix == "backbone.":
        _check_mirrors(sd, tensors, lay.mirrors, where)
    layout_line = _describe(fmt, prefix, path, source)
    return Extracted(fmt, layout_line, prefix, tensors, key_map, dropped, notes, path, network)


def _is_backbone_name(name: str) -> bool:
    """For prefix-less layouts: keys that belong to a backbone (everything else is dropped)."""
    return bool(re.match(r"(conv1|bn1|layer\d+|features|patch_embed|blocks|norm)\.", name)) or \
        name in ("cls_token", "reg_token", "pos_embed")


def _check_mirrors(sd: dict[str, Tensor], tensors: dict[str, Tensor], mirrors: tuple[str, ...],
                   where: str) -> None:
    for mirror in mirrors:
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


def _describe(fmt: str, prefix: str, path: tuple[str, ...], source: str) -> str:
    where = ".".join(path) if path else "top level"
    extra = f", {source}" if source else ""
    return f"{fmt} ({where}, prefix {prefix!r}{extra})"
