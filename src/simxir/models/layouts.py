"""The checkpoint layouts of the SSL toolchains, one row of :data:`LAYOUTS` each, in three parts:
:class:`Detect` (how a file is recognised: :func:`simxir.models.extract.detect_format`), :class:`Read`
(where its online backbone sits and how its names become ours: :func:`simxir.models.extract.extract`)
and :class:`Write` (the file an export writes: :func:`simxir.models.export.wrap`). The code that
reads the table has no layout's name in it; ``docs/architecture.md`` has the checklist for a new row.

Every layout is reduced to a flat ``{torchvision_name: tensor}`` dict by stripping
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
- ``transformers``: a Hugging Face ``save_pretrained`` folder (``config.json`` + ``model.safetensors``),
  read and written by ``simxir.models.hf`` (ViTModel, Dinov2Model with and without registers, ResNetModel).
- ``mae``: main_pretrain.py's ``{"model": {encoder, mask_token, decoder_*}}``, the encoder taken;
  exports ``{"model": encoder}`` (the released ``mae_pretrain_vit_*.pth`` layout); MAE's
  interpolate_pos_embed (by size, not antialiased).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from simxir.errors import UserError

# Top-level key our exports add so that a re-load detects the same format even when the
# checkpoint holds nothing but the backbone (harmless to the original toolchains).
EXPORT_HINT = "simxir_export_format"

_MM_MARKERS = ("neck.", "head.", "encoder_q.", "encoder_k.", "online_net.", "target_net.",
               "queue", "data_preprocessor.")
_LIGHTNING_KEYS = ("pytorch-lightning_version", "hyper_parameters")

Names = Callable[[dict[str, Tensor]], dict[str, Tensor]]
Identify = Callable[[Mapping[str, Any], list[str]], bool]


@dataclass(frozen=True)
class Detect:
    """How a file is recognised, stage by stage (:func:`simxir.models.extract.detect_format`):

    1. our export hint; 2. ``identify(top, keys)``: file-level fields that name the layout outright;
    3. ``unique``: key prefixes no other layout uses; 4. for files with ``backbone.*`` keys, which
    several toolchains share: the layout whose ``markers`` (key prefixes of its heads and momentum
    copies), ``top_keys`` (file-level keys) and ``meta_tag`` (a word in the file's ``meta``) the file
    shows most, ties to the earlier row; with no marker at all, the first row whose ``unmarked(top)``
    claims the file; 5. a marked layout's other prefix (solo-learn's older ``encoder.``);
    6. torchvision names at the top level (or under ``module.``)."""

    identify: Identify | None = None
    unique: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    top_keys: tuple[str, ...] = ()
    meta_tag: str | None = None
    unmarked: Callable[[Mapping[str, Any]], bool] | None = None

    def score(self, top: Mapping[str, Any], keys: list[str]) -> int:
        """How many of its markers the file shows (stage 4)."""
        tag = self.meta_tag is not None and "meta" in top and self.meta_tag in repr(top["meta"])
        return (sum(any(k.startswith(m) for k in keys) for m in self.markers)
                + sum(k in top for k in self.top_keys) + int(tag))


@dataclass(frozen=True)
class Read:
    """Where the online backbone sits and how its names become ours (torchvision / timm names).

    ``container``: the key path of the state dict in the file when it is not one of the usual
    (``state_dict``, ``model``, ``model_state_dict`` or the file itself); a path element may be a
    glob (``*_parameters``). ``prefixes``: where the backbone's keys may sit, in the order tried
    ("" = our names at the top level of the state dict). ``rename``: name fix-ups from the whole key
    set, returning (the mapping, a description of the source network, its semantics such as
    ``{"stem_relu": False}`` or ViT position-embedding rules). ``split_bn``: SplitBatchNorm
    statistics to average. ``mirrors``: prefixes of a second registration of the backbone that must
    agree with it. ``drop``: names under the prefix that are not the evaluated backbone."""

    prefixes: tuple[str, ...]
    container: tuple[str, ...] = ()
    rename: Callable[[list[str]], tuple[dict[str, str], str, dict[str, Any]]] | None = None
    split_bn: bool = False
    mirrors: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class Write:
    """The file an export writes. ``container``: the key path of the state dict (``()``: the file is
    the state dict; None: no export in this layout); ``prefix`` its keys' prefix (``vit_prefix`` for
    ViTs where it differs); ``extras``: file-level entries merged in; ``arch``: add main_moco.py's
    ``{"arch": ...}``; ``names``: our names -> the layout's (and tensors its model holds beside the
    backbone's); ``names_without_stem_relu``: how a ResNet without a ReLU after bn1 is written (None:
    the layout's network always has one, so such an encoder is refused); ``vit``: which backbones it
    holds (True ViTs, False ResNets/ConvNets, None both); ``vit_heads``: its ViTs' attention heads
    where they are not timm's."""

    container: tuple[str, ...] | None = ("state_dict",)
    prefix: str = "backbone."
    vit_prefix: str | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    arch: bool = False
    names: Names | None = None
    names_without_stem_relu: Names | None = None
    vit: bool | None = False
    vit_heads: int | None = None


@dataclass(frozen=True)
class Layout:
    """One toolchain's checkpoint layout. ``cifar_stem_padding``: the padding its own CIFAR ResNet
    stem uses (None: the file records it, or the layout holds no ResNet)."""

    name: str
    detect: Detect
    read: Read
    write: Write = field(default_factory=Write)
    cifar_stem_padding: int | None = 1


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
    return "0.weight" in keys and "1.running_var" in keys and not any(k.startswith("backbone.") for k in keys)


def _simxir_run(obj: Mapping[str, Any], keys: list[str]) -> bool:
    return {"model", "config", "history"} <= set(obj) and any(k.startswith("backbone.") for k in keys)


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


def _mae_rename(names: list[str]) -> tuple[dict[str, str], str, dict[str, Any]]:
    """MAE's interpolate_pos_embed: by size, not antialiased."""
    return {n: n for n in names}, "", {"pos_offset": 0.0, "pos_antialias": False}


def _mae(obj: Mapping[str, Any], keys: list[str]) -> bool:
    """MAE's pretraining checkpoint: the encoder beside ``mask_token`` and the ``decoder_*``."""
    return "decoder_embed.weight" in keys and _bare_vit()(obj, keys)


def _transformers(obj: Mapping[str, Any], keys: list[str]) -> bool:
    """Hugging Face ViTModel / Dinov2Model / ResNetModel names."""
    return any(k.startswith(("embeddings.patch_embeddings.", "embedder.embedder.")) for k in keys)


LAYOUTS: tuple[Layout, ...] = (
    Layout("torchvision", Detect(), Read(("", "module.")), Write(container=(), prefix="")),
    Layout("simxir", Detect(identify=_simxir_run), Read(("backbone.", "")), Write(container=None),
           cifar_stem_padding=None),
    Layout("lightly",
           Detect(identify=_bare_sequential,
                  markers=("projection_head.", "prediction_head.", "teacher_backbone.", "student_backbone.",
                           "backbone_momentum.", "online_classifier.", "teacher_projection_head.",
                           "student_projection_head.", "projection_head_momentum.", "backbone.0.")),
           Read(("backbone.", ""), container=("*_parameters",), rename=_lightly_rename, split_bn=True),
           Write(extras={EXPORT_HINT: "lightly"}, names_without_stem_relu=lightly_generator_names)),
    Layout("solo-learn",
           Detect(markers=("projector.", "classifier.", "momentum_backbone.", "momentum_projector.",
                           "predictor.", "momentum_encoder."),
                  unmarked=lambda top: any(k in top for k in _LIGHTNING_KEYS)),   # lightly's files hold heads
           Read(("backbone.", "encoder.")), Write(extras={EXPORT_HINT: "solo-learn"}), cifar_stem_padding=2),
    Layout("mmselfsup",
           Detect(identify=lambda top, keys: top.get("author") == "MMSelfSup", markers=_MM_MARKERS,
                  top_keys=("meta",), unmarked=lambda top: True),   # 1.x's backbone-only dict
           Read(("backbone.", ""), mirrors=("encoder_q.0.", "online_net.0.")),
           Write(prefix="", extras={"author": "MMSelfSup"})),
    Layout("mmpretrain", Detect(markers=_MM_MARKERS, top_keys=("meta",), meta_tag="mmpretrain"),
           Read(("backbone.", ""), mirrors=("encoder_q.0.", "online_net.0.")),
           Write(extras={"meta": {"mmpretrain_version": "exported by simxir"}})),
    Layout("moco", Detect(unique=("module.encoder_q.", "module.base_encoder.")),
           Read(("module.encoder_q.", "module.base_encoder.", ""), rename=_moco_rename),
           Write(prefix="module.encoder_q.", vit_prefix="module.base_encoder.", arch=True, vit=None, vit_heads=12)),
    Layout("simsiam", Detect(unique=("module.encoder.",)), Read(("module.encoder.",)),
           Write(prefix="module.encoder.", arch=True)),
    Layout("bridge", Detect(unique=("module.backbone.",)), Read(("module.backbone.", "")),
           Write(container=("model",), prefix="module.backbone.", extras={EXPORT_HINT: "bridge"})),
    Layout("dino", Detect(identify=_teacher_student("dino_loss")),
           Read(("backbone.", "module.backbone.", ""), container=("teacher",), rename=_dino_rename),
           Write(container=("teacher",), extras={EXPORT_HINT: "dino"}, vit=True), cifar_stem_padding=None),
    Layout("ibot", Detect(identify=_teacher_student("ibot_loss")),
           Read(("backbone.", "module.backbone.", ""), container=("teacher",), rename=_dino_rename,
                drop=("masked_embed",)),
           Write(container=("teacher",), extras={EXPORT_HINT: "ibot"}, names=_ibot_names, vit=True),
           cifar_stem_padding=None),
    Layout("mae", Detect(identify=_mae), Read(("",), rename=_mae_rename),
           Write(container=("model",), prefix="", extras={EXPORT_HINT: "mae"}, vit=True), cifar_stem_padding=None),
    Layout("dinov2", Detect(identify=_dinov2), Read(("",), rename=_dinov2_rename),
           Write(container=(), prefix="", names=_dinov2_names, vit=True), cifar_stem_padding=None),
    Layout("timm", Detect(identify=_timm), Read(("", "module.")), Write(container=(), prefix="", vit=True),
           cifar_stem_padding=None),
    Layout("transformers", Detect(identify=_transformers), Read(("",)), Write(container=None, vit=None),
           cifar_stem_padding=None),   # read and written with config.json by simxir.models.hf
    Layout("vissl", Detect(unique=("_feature_blocks.",)),
           Read(("_feature_blocks.",), container=("classy_state_dict", "base_model", "model", "trunk")),
           Write(container=("classy_state_dict", "base_model", "model", "trunk"), prefix="_feature_blocks.",
                 extras={"classy_state_dict": {"base_model": {"model": {"heads": {}}}}})),
)
BY_NAME: dict[str, Layout] = {lay.name: lay for lay in LAYOUTS}
FORMATS: tuple[str, ...] = tuple(BY_NAME)


def layout(fmt: str, option: str = "--format") -> Layout:
    """The layout named ``fmt``; a UserError naming ``option`` for an unknown name."""
    if fmt not in BY_NAME:
        raise UserError(f"{option} {fmt!r}: expected one of {', '.join(FORMATS)}")
    return BY_NAME[fmt]
