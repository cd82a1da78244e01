"""Writing an encoder: our safetensors file (:func:`save_encoder`), another toolchain's layout
(:func:`export_encoder`: a file of that layout holding the backbone, or a copy of the original
checkpoint with the backbone replaced, as each row's ``Write`` part of
:data:`simxir.models.layouts.LAYOUTS` says) and the check that an export loads back the same
(:func:`verify_export`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor, nn

from simxir.config import deep_update
from simxir.errors import UserError
from simxir.io import atomic_save, atomic_write_bytes, load_checkpoint
from simxir.models import hf
from simxir.models.extract import extract, find_state_dict
from simxir.models.layouts import BY_NAME, FORMATS, layout
from simxir.models.load import LoadReport, load_encoder
from simxir.models.vit import VIT_SIZES, VisionTransformer


def wrap(sd: dict[str, Tensor], fmt: str, arch: str, stem_relu: bool = True) -> Any:
    """The file object of format ``fmt`` holding only the backbone ``sd`` (torchvision names);
    ``stem_relu=False`` writes the layout's names of a network without a ReLU after bn1 (only for
    layouts with ``names_without_stem_relu``)."""
    lay = layout(fmt).write
    if lay.container is None:
        raise UserError(f"--format {fmt!r}: expected one of {', '.join(f for f in FORMATS if f != fmt)}")
    if not stem_relu:   # export_encoder has refused the layouts without such names
        sd = lay.names_without_stem_relu(sd)
    vit = "patch_embed.proj.weight" in sd
    if lay.names is not None:
        sd = lay.names(sd)
    prefix = lay.vit_prefix if vit and lay.vit_prefix is not None else lay.prefix
    obj: Any = {prefix + k: v for k, v in sd.items()}
    for key in reversed(lay.container):
        obj = {key: obj}
    if not lay.container:
        return obj
    obj = deep_update(obj, copy.deepcopy(dict(lay.extras)))
    if lay.arch:   # main_moco.py's --arch: resnet50, vit_small
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
            for mirror in BY_NAME[ex.format].read.mirrors:
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


def _check_stem_fits(model: nn.Module, format: str) -> None:
    """Refuse an export whose stem the target's own model would rebuild differently.

    solo-learn builds its CIFAR stem with padding 2 and the other layouts' models (torchvision
    names) with padding 1; only simxir's own file records the padding. The same weights under
    another padding compute other features, so such an export is an error, not a silent change."""
    lay = BY_NAME[format]
    if not getattr(model, "stem_relu", True) and format != "simxir" and lay.write.names_without_stem_relu is None:
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
                    pos_antialias=str(model.pos_antialias).lower(), heads=str(model.heads),
                    norm_eps=repr(model.norm_eps))
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
    if format == "transformers":   # a save_pretrained folder: config.json + model.safetensors
        folder = hf.folder_of(Path(template)) if isinstance(template, (str, Path)) else None
        if not getattr(model, "stem_relu", True):
            raise UserError("--to transformers: this encoder has no ReLU after bn1, which ResNetModel applies")
        hf.write_folder(model, Path(path), folder)
        return format
    is_vit = isinstance(model, VisionTransformer)
    if format != "simxir" and lay.write.vit is not None and lay.write.vit != is_vit:
        what = "ViT" if lay.write.vit else "ResNet/ConvNet"
        raise UserError(f"--format {format}: a {what} layout; {model.arch} cannot be written in it")
    if format != "simxir" and is_vit:
        heads = lay.write.vit_heads or VIT_SIZES[model.size][2]
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
    if Path(path).suffix == ".safetensors":   # the name promises safetensors: write that, or refuse
        if not (isinstance(out, dict) and out and all(isinstance(v, Tensor) for v in out.values())):
            raise UserError(f"{path}: a {format} checkpoint is a nested torch file, not a flat dict of tensors; "
                            f"name it .pth (safetensors holds the flat layouts: timm, dinov2, torchvision)")
        atomic_write_bytes(path, save({k: v.contiguous() for k, v in out.items()}, metadata={"format": "pt"}))
    else:
        atomic_save(out, path)
    return format
