"""Checkpoint layouts of the SSL toolchains: detect one, pull the online backbone out, write it back.

Each layout is one row of :data:`LAYOUTS` (a :class:`Layout`: prefixes, markers, container, export
extras); detection, prefix stripping and export wrapping are derived from that table, so a new format
is one new row. Every layout is reduced to a flat ``{torchvision_name: tensor}`` dict by stripping
exactly one known prefix with ``str.removeprefix``. Momentum/target/teacher copies (``encoder_k``,
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

ViTs (timm names, see ``simxir.models.vit``):

- ``dino``: main_dino.py's checkpoint ``{"student": {module.backbone.*, module.head.*}, "teacher":
  {backbone.*, head.*}, "dino_loss", ...}``: the teacher is taken (what DINO's eval scripts use);
  ``--format dino`` also reads the released bare backbone files with DINO's position-embedding
  interpolation (offset 0.1). Exports ``{"teacher": {backbone.*}}`` (or into the original file).
- ``dinov2``: the hub's bare state dicts (``mask_token`` dropped, ``register_tokens`` ->
  ``reg_token``); DINOv2's interpolation (offset 0.1; its register models: by size, antialiased).
- ``timm``: a bare timm ViT state dict (``head.*`` dropped), also under ``module.``.
- ``moco`` (above) also holds MoCo v3's ViTs (vits.py: ``module.base_encoder.*``, ``head.*`` the
  projection MLP, dropped; 12 attention heads at every size; fixed sin-cos ``pos_embed``).
  convert_to_deit.py's output ``{"model": bare ViT}`` looks like a timm/DeiT file (6 heads at ViT-S):
  pass ``--format moco`` to read it with MoCo v3's 12 heads.
- ``ibot``: main_ibot.py's checkpoint, as DINO's with ``ibot_loss`` (the teacher is taken; the
  student's ``masked_embed`` is not part of the backbone; layer scale ``gamma_1``/``gamma_2``).
- ``mae``: main_pretrain.py's ``{"model": {encoder, mask_token, decoder_*}}``, the encoder taken;
  exports ``{"model": encoder}`` (the released ``mae_pretrain_vit_*.pth`` layout); MAE's
  interpolate_pos_embed (by size, not antialiased).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from simxir.config import deep_update
from simxir.errors import UserError

# Top-level key our exports add so that a re-load detects the same format even when the
# checkpoint holds nothing but the backbone (harmless to the original toolchains).
EXPORT_HINT = "simxir_export_format"

_MM_MARKERS = ("neck.", "head.", "encoder_q.", "encoder_k.", "online_net.", "target_net.",
               "queue", "data_preprocessor.")
_LIGHTNING_KEYS = ("pytorch-lightning_version", "hyper_parameters")


# lightly's backbones as ``nn.Sequential``: its benchmarks' ``ResNetGenerator`` children (conv1, bn1,
# layer1..4; the ReLU after bn1 is functional in its forward, so the Sequential has none) and its
# examples' torchvision ResNet children (conv1, bn1, relu, maxpool, layer1..4)
_GENERATOR_SEQ = {"0": "conv1", "1": "bn1", "2": "layer1", "3": "layer2", "4": "layer3", "5": "layer4"}
_TORCHVISION_SEQ = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def _lightly_rename(names: list[str]) -> tuple[dict[str, str], str, dict[str, Any]]:
    """(old -> torchvision name, what the source network was, its semantics) for lightly's keys."""
    heads = {n.partition(".")[0] for n in names}
    if not {"0", "1"} <= heads:
        return {n: n for n in names}, "", {}
    if heads & {"6", "7"}:
        seq, what, net = _TORCHVISION_SEQ, "torchvision ResNet as nn.Sequential (lightly's examples)", {}
    else:
        seq, what = _GENERATOR_SEQ, "ResNetGenerator as nn.Sequential (lightly's benchmarks; no ReLU after bn1)"
        net = {"stem_relu": False}

    def rename(name: str) -> str:
        head, _, rest = name.partition(".")
        if head not in seq or not rest:
            return name
        return f"{seq[head]}.{rest.replace('.shortcut.', '.downsample.')}"

    return {n: rename(n) for n in names}, what, net


def lightly_generator_names(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """torchvision names -> lightly's ``nn.Sequential(*ResNetGenerator.children()[:-1])`` names."""
    back = {v: k for k, v in _GENERATOR_SEQ.items()}
    out = {}
    for name, t in sd.items():
        head, _, rest = name.partition(".")
        out[f"{back[head]}.{rest.replace('.downsample.', '.shortcut.')}" if head in back else name] = t
    return out


def _bare_sequential(top: Mapping[str, Any], keys: list[str]) -> bool:
    """A bare ``nn.Sequential`` ResNet state dict (lightly's tutorial saves ``backbone.state_dict()``)."""
    return "0.weight" in keys and "1.running_var" in keys and not _has(keys, "backbone.")


@dataclass(frozen=True)
class Layout:
    """One toolchain's checkpoint layout; detection, prefix stripping and export derive from it.

    ``prefixes``: where its online backbone may sit, in the order tried ("" = torchvision names at
    the top level of the state dict). ``unique``: prefixes no other layout uses (finding one names
    this layout). ``markers``: key prefixes of its heads and momentum copies, which tell apart the
    layouts that share ``backbone.``; ``top_keys``: file-level keys that count as markers too, and
    ``meta_tag`` a word in the file's ``meta``. ``identify``: file-level fields that name the layout
    outright. ``container``: the key path of the state dict in an export (``()``: the file is the
    state dict), ``export_prefix`` its keys' prefix, ``extras`` file-level entries the export adds
    (merged into the nested container), ``export_arch`` adds ``{"arch": torchvision name}``.
    ``mirrors``: prefixes of a second registration of the backbone that must agree with it.
    ``rename``: name fix-ups from the whole key set (returning the mapping, a description of the
    source network and its semantics, e.g. ``{"stem_relu": False}``); ``split_bn``: SplitBatchNorm
    statistics to merge.
    ``cifar_stem_padding``: the padding its own CIFAR ResNet stem uses (None: the file records it).
    ``names_without_stem_relu``: how an encoder without a ReLU after bn1 is written in this layout
    (lightly: the ResNetGenerator Sequential names); None: the layout's network always has it.
    """

    name: str
    prefixes: tuple[str, ...]
    unique: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    top_keys: tuple[str, ...] = ()
    meta_tag: str | None = None
    identify: Callable[[Mapping[str, Any], list[str]], bool] | None = None
    container: tuple[str, ...] | None = ("state_dict",)    # None: no export of this layout here
    export_prefix: str = "backbone."
    extras: Mapping[str, Any] = field(default_factory=dict)
    export_arch: bool = False
    mirrors: tuple[str, ...] = ()
    rename: Callable[[list[str]], tuple[dict[str, str], str, dict[str, Any]]] | None = None
    split_bn: bool = False
    cifar_stem_padding: int | None = 1
    # the key names of the layout's network without a ReLU after bn1 (None: it has no such network)
    names_without_stem_relu: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    # our names -> the layout's (and tensors its model holds beside the backbone's), for exports
    export_names: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None
    vit: bool | None = False   # True: ViTs only, False: ResNets/ConvNets only, None: both
    vit_heads: int | None = None          # its ViTs' attention heads where they are not timm's
    vit_export_prefix: str | None = None  # the export prefix of its ViTs where it is not export_prefix
    drop: tuple[str, ...] = ()            # backbone-prefixed names that are not the evaluated backbone

    def score(self, obj: Any, keys: list[str]) -> int:
        """How many of its markers the file shows (for layouts sharing a prefix)."""
        top = obj if isinstance(obj, Mapping) else {}
        tag = self.meta_tag is not None and "meta" in top and self.meta_tag in repr(top["meta"])
        return (sum(_has(keys, m) for m in self.markers) + sum(k in top for k in self.top_keys)
                + int(tag))


def _simxir_run(obj: Mapping[str, Any], keys: list[str]) -> bool:
    return {"model", "config", "history"} <= set(obj) and _has(keys, "backbone.")


def _bare_vit(prefix: str = "") -> Callable[[Mapping[str, Any], list[str]], bool]:
    return lambda obj, keys: f"{prefix}patch_embed.proj.weight" in keys and f"{prefix}pos_embed" in keys


def _dinov2(obj: Mapping[str, Any], keys: list[str]) -> bool:
    """DINOv2's hub checkpoints: the bare ViT with its (unused at inference) ``mask_token``."""
    return "mask_token" in keys and _bare_vit()(obj, keys)


def _dinov2_rename(names: list[str]) -> tuple[dict[str, str], str, dict[str, Any]]:
    out = {n: ("reg_token" if n == "register_tokens" else n) for n in names}
    # DINOv2's interpolate_pos_encoding: by scale factor with offset 0.1 (not antialiased); its
    # register models are built with offset 0 and antialiasing (dinov2/hub/backbones.py)
    reg = "register_tokens" in names
    return out, "", {"pos_offset": 0.0 if reg else 0.1, "pos_antialias": reg}


def _dinov2_names(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Our ViT's tensors under DINOv2's names, with the zero ``mask_token`` its model holds."""
    out = {("register_tokens" if k == "reg_token" else k): v for k, v in sd.items()}
    out["mask_token"] = torch.zeros(1, sd["cls_token"].shape[-1])
    return out


def _timm(obj: Mapping[str, Any], keys: list[str]) -> bool:
    return _bare_vit()(obj, keys) or _bare_vit("module.")(obj, keys)


def _teacher_student(loss: str) -> Callable[[Mapping[str, Any], list[str]], bool]:
    """main_dino.py / main_ibot.py checkpoints: teacher and student dicts beside the loss's state."""
    return lambda obj, keys: isinstance(obj.get("teacher"), Mapping) and \
        isinstance(obj.get("student"), Mapping) and loss in obj


def _dino_rename(names: list[str]) -> tuple[dict[str, str], str, dict[str, Any]]:
    """DINO's / iBOT's interpolate_pos_encoding: scale factor with offset 0.1, not antialiased;
    iBOT's layer scale (``init_values`` > 0) is ``gamma_1``/``gamma_2``."""
    out = {n: re.sub(r"\.gamma_([12])$", r".ls\1.gamma", n) for n in names}
    return out, "", {"pos_offset": 0.1, "pos_antialias": False}


def _ibot_names(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    return {re.sub(r"\.ls([12])\.gamma$", r".gamma_\1", k): v for k, v in sd.items()}


def _moco_rename(names: list[str]) -> tuple[dict[str, str], str, dict[str, Any]]:
    """MoCo v3's ViTs (vits.py) have 12 attention heads at every size (timm's ViT-S has 6)."""
    return {n: n for n in names}, "", ({"heads": 12} if "patch_embed.proj.weight" in names else {})


def _mae(obj: Mapping[str, Any], keys: list[str]) -> bool:
    """MAE's pretraining checkpoint: the encoder beside ``mask_token`` and the ``decoder_*``."""
    return "decoder_embed.weight" in keys and _bare_vit()(obj, keys)


LAYOUTS: tuple[Layout, ...] = (
    Layout("torchvision", ("", "module."), container=(), export_prefix=""),
    Layout("simxir", ("backbone.", ""), identify=_simxir_run, container=None, cifar_stem_padding=None),
    Layout("lightly", ("backbone.", ""), identify=_bare_sequential,
           markers=("projection_head.", "prediction_head.", "teacher_backbone.", "student_backbone.",
                    "backbone_momentum.", "online_classifier.", "teacher_projection_head.",
                    "student_projection_head.", "projection_head_momentum.", "backbone.0."),
           extras={EXPORT_HINT: "lightly"}, rename=_lightly_rename, split_bn=True,
           names_without_stem_relu=lightly_generator_names),
    Layout("solo-learn", ("backbone.", "encoder."),
           markers=("projector.", "classifier.", "momentum_backbone.", "momentum_projector.",
                    "predictor.", "momentum_encoder."),
           extras={EXPORT_HINT: "solo-learn"}, cifar_stem_padding=2),
    Layout("mmselfsup", ("backbone.", ""), markers=_MM_MARKERS, top_keys=("meta",),
           identify=lambda obj, keys: obj.get("author") == "MMSelfSup", export_prefix="",
           extras={"author": "MMSelfSup"}, mirrors=("encoder_q.0.", "online_net.0.")),
    Layout("mmpretrain", ("backbone.", ""), markers=_MM_MARKERS, top_keys=("meta",), meta_tag="mmpretrain",
           extras={"meta": {"mmpretrain_version": "exported by simxir"}},
           mirrors=("encoder_q.0.", "online_net.0.")),
    Layout("moco", ("module.encoder_q.", "module.base_encoder.", ""),
           unique=("module.encoder_q.", "module.base_encoder."), export_prefix="module.encoder_q.",
           export_arch=True, vit=None, vit_heads=12, vit_export_prefix="module.base_encoder.",
           rename=_moco_rename),
    Layout("simsiam", ("module.encoder.",), unique=("module.encoder.",), export_prefix="module.encoder.",
           export_arch=True),
    Layout("bridge", ("module.backbone.", ""), unique=("module.backbone.",), container=("model",),
           export_prefix="module.backbone.", extras={EXPORT_HINT: "bridge"}),
    Layout("dino", ("backbone.", "module.backbone.", ""), identify=_teacher_student("dino_loss"),
           container=("teacher",), extras={EXPORT_HINT: "dino"}, vit=True, cifar_stem_padding=None,
           rename=_dino_rename),
    Layout("ibot", ("backbone.", "module.backbone.", ""), identify=_teacher_student("ibot_loss"),
           container=("teacher",), extras={EXPORT_HINT: "ibot"}, vit=True, cifar_stem_padding=None,
           rename=_dino_rename, export_names=_ibot_names, drop=("masked_embed",)),
    Layout("mae", ("",), identify=_mae, container=("model",), export_prefix="", extras={EXPORT_HINT: "mae"},
           vit=True, cifar_stem_padding=None,
           rename=lambda names: ({n: n for n in names}, "", {"pos_offset": 0.0, "pos_antialias": False})),
    Layout("dinov2", ("",), identify=_dinov2, container=(), export_prefix="", cifar_stem_padding=None,
           rename=_dinov2_rename, export_names=_dinov2_names, vit=True),
    Layout("timm", ("", "module."), identify=_timm, container=(), export_prefix="", cifar_stem_padding=None,
           vit=True),
    Layout("vissl", ("_feature_blocks.",), unique=("_feature_blocks.",),
           container=("classy_state_dict", "base_model", "model", "trunk"), export_prefix="_feature_blocks.",
           extras={"classy_state_dict": {"base_model": {"model": {"heads": {}}}}}),
)
BY_NAME: dict[str, Layout] = {lay.name: lay for lay in LAYOUTS}
FORMATS: tuple[str, ...] = tuple(BY_NAME)


def _bare_backbone(obj: Any) -> str:
    """The layout of a file with ``backbone.*`` and no marker of any layout: solo-learn's when it is
    a Lightning checkpoint (lightly's always hold heads), else mmselfsup 1.x's backbone-only dict."""
    top = obj if isinstance(obj, Mapping) else {}
    return "solo-learn" if any(k in top for k in _LIGHTNING_KEYS) else "mmselfsup"


def layout(fmt: str, option: str = "--format") -> Layout:
    """The layout named ``fmt``; a UserError naming ``option`` for an unknown name."""
    if fmt not in BY_NAME:
        raise UserError(f"{option} {fmt!r}: expected one of {', '.join(FORMATS)}")
    return BY_NAME[fmt]


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
        if isinstance(obj.get("teacher"), Mapping) and _flat(obj["teacher"]) is not None:
            return dict(obj["teacher"]), ("teacher",)     # DINO / iBOT: the teacher is what is evaluated
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and _flat(obj[key]) is not None:
                return dict(obj[key]), (key,)
        if len(obj) == 1:   # lightly's tutorial: {"resnet18_parameters": backbone.state_dict()}
            (key, value), = obj.items()
            if isinstance(key, str) and key.endswith("_parameters") and _flat(value) is not None:
                return dict(value), (key,)
    sd = _flat(obj)
    if sd is not None:
        return sd, ()
    keys = list(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
    raise UserError(f"{where}: no state_dict of tensors found (top level: {keys})")


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def _bare(keys: list[str], prefix: str) -> bool:
    """Whether torchvision (or timm ViT) backbone names sit directly under ``prefix``."""
    return any(f"{prefix}{k}" in keys for k in ("conv1.weight", "features.0.weight", "patch_embed.proj.weight"))


def detect_format(obj: Any, sd: dict[str, Tensor]) -> tuple[str, str]:
    """Name the layout of a loaded checkpoint: (format, prefix of the online backbone).

    In order: our export hint; a layout the file's top level identifies; a prefix only one layout
    uses; ``backbone.`` (shared: the layout whose markers the file shows most, ties to the earlier
    in LAYOUTS); a marked layout's other prefix (solo-learn's older ``encoder.``); torchvision names.
    """
    keys = list(sd)
    top = obj if isinstance(obj, Mapping) else {}
    hint = top.get(EXPORT_HINT)
    if isinstance(hint, str) and hint in BY_NAME:
        return hint, backbone_prefix(hint, obj, keys)
    for lay in LAYOUTS:
        if lay.identify is not None and lay.identify(top, keys):
            return lay.name, backbone_prefix(lay.name, obj, keys)
    for lay in LAYOUTS:
        for p in lay.unique:
            if _has(keys, p):
                return lay.name, p
    shared = [lay for lay in LAYOUTS if lay.markers and "backbone." in lay.prefixes]
    if _has(keys, "backbone."):
        scores = {lay.name: lay.score(obj, keys) for lay in shared}
        best = max(scores, key=lambda n: scores[n])
        return (best if scores[best] else _bare_backbone(obj)), "backbone."
    for lay in shared:
        for p in lay.prefixes:
            if p not in ("", "backbone.") and _has(keys, p) and lay.score(obj, keys):
                return lay.name, p
    for p in BY_NAME["torchvision"].prefixes:
        if _bare(keys, p):
            return "torchvision", p
    raise UserError(f"unrecognised checkpoint layout (first keys: {keys[:5]}); "
                    f"pass --format with one of {', '.join(FORMATS)}")


def backbone_prefix(fmt: str, obj: Any, keys: list[str]) -> str:
    """The prefix of the online backbone's keys for a format named by the user."""
    lay = layout(fmt)
    candidates = lay.prefixes
    # top-level names count once the layout's own renaming is applied (lightly's bare Sequential)
    names = list(lay.rename(keys)[0].values()) if lay.rename is not None else keys
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
    lay = BY_NAME[fmt]
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


# ---------------------------------------------------------------- writing back

def wrap(sd: dict[str, Tensor], fmt: str, arch: str, stem_relu: bool = True) -> Any:
    """The file object of format ``fmt`` holding only the backbone ``sd`` (torchvision names);
    ``stem_relu=False`` writes the layout's names of a network without a ReLU after bn1 (only for
    layouts with ``names_without_stem_relu``)."""
    lay = layout(fmt)
    if lay.container is None:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(f for f in FORMATS if f != fmt)}")
    if not stem_relu:   # export_encoder has refused the layouts without such names
        sd = lay.names_without_stem_relu(sd)
    vit = "patch_embed.proj.weight" in sd
    if lay.export_names is not None:
        sd = lay.export_names(sd)
    prefix = lay.vit_export_prefix if vit and lay.vit_export_prefix is not None else lay.export_prefix
    obj: Any = {prefix + k: v for k, v in sd.items()}
    for key in reversed(lay.container):
        obj = {key: obj}
    if not lay.container:
        return obj
    obj = deep_update(obj, copy.deepcopy(dict(lay.extras)))
    if lay.export_arch:   # main_moco.py's --arch: resnet50, vit_small
        obj["arch"] = arch.replace("-", "_") if vit else arch.removesuffix("-cifar")
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
        if ex.prefix == "backbone.":
            for mirror in BY_NAME[ex.format].mirrors:
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
