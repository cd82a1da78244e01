"""Hugging Face ``transformers`` model folders (``save_pretrained``: ``config.json`` + ``model.safetensors``),
read into simxir's own backbones and written back.

Families: ``ViTModel`` (``model_type`` vit), ``Dinov2Model`` (dinov2), ``Dinov2WithRegistersModel``
(dinov2_with_registers) and ``ResNetModel`` (resnet, as microsoft/resnet-50). ``save_pretrained`` of
transformers 4.57 and 5.25 both write the 4.x names (``encoder.layer.N.attention.attention.query``);
5.x's own modules hold ``layers.N.attention.q_proj`` (ViT) / ``encoder.layer.N.attention.q_proj``
(Dinov2), which a ``model.state_dict()`` saved by hand carries: both are read
(benchmarks/checkpoints/verify_transformers.py checks each version's own files). Exports use the
names ``save_pretrained`` writes. The architecture comes from ``config.json`` (LayerNorm eps and
attention heads included); what simxir's backbones cannot build is refused with one line. A ViT's
feature is the class token after the final norm (what DINO and DINOv2 report), a ResNet's the
pooled output; ViTModel's pooler (dense + tanh) is dropped. Position embeddings at another image
size follow the family's ``interpolate_pos_encoding``: bicubic by output size, antialiased only for
the register models. ``preprocessor_config.json``, when present, gives the mean/std the model was
trained with.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import Tensor

from simxir.errors import UserError
from simxir.io import atomic_write_bytes, load_checkpoint, read_safetensors, require_file

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
PREPROCESSOR = "preprocessor_config.json"
VIT_TYPES = {"vit": "ViTModel", "dinov2": "Dinov2Model", "dinov2_with_registers": "Dinov2WithRegistersModel"}
RESNETS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
           ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101"}

# one ViT block, Hugging Face name -> timm/simxir name ({i}: the block); q, k, v are fused into qkv
_VIT_BLOCK = {"layernorm_before": "norm1", "layernorm_after": "norm2", "norm1": "norm1", "norm2": "norm2",
              "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
              "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2", "layer_scale1.lambda1": "ls1.gamma",
              "layer_scale2.lambda1": "ls2.gamma"}
_VIT_TOP = {"embeddings.cls_token": "cls_token", "embeddings.position_embeddings": "pos_embed",
            "embeddings.register_tokens": "reg_token", "embeddings.patch_embeddings.projection.weight":
            "patch_embed.proj.weight", "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
            "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
_VIT_DROP = ("embeddings.mask_token", "pooler.")


def folder_of(path: Path) -> Path | None:
    """The model folder ``path`` names: itself when it holds ``config.json``, the file's folder for a
    weights file with ``config.json`` beside it whose config names a transformers model; else None."""
    folder = path if path.is_dir() else path.parent
    cfg = folder / CONFIG
    if not cfg.is_file():
        return None
    if path.is_dir():
        return folder
    try:
        has_type = "model_type" in json.loads(cfg.read_text())
    except (ValueError, OSError, UnicodeDecodeError):
        return None
    return folder if has_type and path.suffix in (".safetensors", ".bin") else None


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG
    try:
        cfg = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(cfg, dict) or "model_type" not in cfg:
        raise UserError(f"{path}: not a transformers config (no model_type)")
    return cfg


def read_weights(folder: Path, weights: Path | None, allow_pickle: bool = False,
                 safetensors_only: bool = False) -> dict[str, Tensor]:
    """The state dict of the folder: ``model.safetensors`` (or the file given), else ``pytorch_model.bin``
    (``safetensors_only``: refused)."""
    path = weights if weights is not None and weights.is_file() else folder / WEIGHTS
    if not path.is_file() and (folder / "pytorch_model.bin").is_file():
        path = folder / "pytorch_model.bin"
    require_file(path, f"a transformers weights file ({WEIGHTS}) beside {CONFIG}", noun="weights file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)[0]
    if safetensors_only:
        raise UserError(f"{path}: the template's weights must be {WEIGHTS}")
    sd = load_checkpoint(path, allow_pickle=allow_pickle)
    if not isinstance(sd, dict):
        raise UserError(f"{path}: expected a state dict")
    return sd


def preprocessing(folder: Path) -> dict[str, Any] | None:
    """``{"mean", "std", "size"}`` from ``preprocessor_config.json`` (None when the folder has none)."""
    path = folder / PREPROCESSOR
    if not path.is_file():
        return None
    try:
        pre = json.loads(path.read_text())
        mean, std = [float(v) for v in pre["image_mean"]], [float(v) for v in pre["image_std"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: expected image_mean and image_std lists ({type(exc).__name__})") from None
    crop = pre.get("crop_size") or pre.get("size") or {}
    size = crop.get("height") or crop.get("shortest_edge") if isinstance(crop, dict) else crop
    return {"mean": tuple(mean), "std": tuple(std), "size": int(size) if size else None, "source": str(path)}


def to_simxir(sd: dict[str, Tensor], cfg: dict[str, Any], where: str) -> tuple[dict[str, Tensor], dict[str, Any],
                                                                                 list[str], str]:
    """(our tensors, the network options, the dropped keys, the architecture) of a transformers model."""
    kind = cfg["model_type"]
    if kind in VIT_TYPES:
        return _vit_in(sd, cfg, where)
    if kind == "resnet":
        return _resnet_in(sd, cfg, where)
    raise UserError(f"{where}: a transformers {kind!r} model ({', '.join(cfg.get('architectures') or [])}); "
                    f"simxir reads {', '.join(sorted(set(VIT_TYPES.values())) + ['ResNetModel'])}")


def _check(cfg: dict[str, Any], where: str, **expected: Any) -> None:
    for key, want in expected.items():
        have = cfg.get(key, want)
        if have != want:
            raise UserError(f"{where}: config.json {key}={have!r}, which simxir's backbone cannot build "
                            f"(it needs {want!r})")


def _legacy(key: str) -> str:
    """transformers 5.x's in-memory names (``layers.N.attention.q_proj``, Dinov2's
    ``encoder.layer.N.attention.q_proj``; what ``model.state_dict()`` holds there) -> the names
    ``save_pretrained`` writes in 4.x and 5.x (``encoder.layer.N.attention.attention.query``)."""
    key = re.sub(r"^layers\.(\d+)\.", r"encoder.layer.\1.", key)
    for new, old in (("q_proj", "attention.query"), ("k_proj", "attention.key"), ("v_proj", "attention.value"),
                     ("o_proj", "output.dense")):
        key = re.sub(rf"^(encoder\.layer\.\d+\.attention)\.{new}\.", rf"\1.{old}.", key)
    return key


def _vit_in(sd: dict[str, Tensor], cfg: dict[str, Any], where: str) -> tuple[dict[str, Tensor], dict[str, Any],
                                                                              list[str], str]:
    _check(cfg, where, hidden_act="gelu", qkv_bias=True, use_swiglu_ffn=False, num_channels=3)
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    qkv: dict[int, dict[str, Tensor]] = {}
    for key, t in {_legacy(k): v for k, v in sd.items()}.items():
        m = re.fullmatch(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias|lambda1)", key)
        if key in _VIT_TOP:
            out[_VIT_TOP[key]] = t
        elif key.startswith(_VIT_DROP):
            dropped.append(key)
        elif m and m.group(2) in ("attention.attention.query", "attention.attention.key", "attention.attention.value"):
            qkv.setdefault(int(m.group(1)), {})[f"{m.group(2).rsplit('.', 1)[1]}.{m.group(3)}"] = t
        elif m and f"{m.group(2)}.{m.group(3)}" in _VIT_BLOCK:      # layer_scale1.lambda1
            out[f"blocks.{m.group(1)}.{_VIT_BLOCK[m.group(2) + '.' + m.group(3)]}"] = t
        elif m and m.group(2) in _VIT_BLOCK:
            out[f"blocks.{m.group(1)}.{_VIT_BLOCK[m.group(2)]}.{m.group(3)}"] = t
        else:
            raise UserError(f"{where}: unexpected tensor {key} for a transformers {cfg['model_type']} model")
    for i, parts in qkv.items():
        for p in ("weight", "bias"):
            try:
                out[f"blocks.{i}.attn.qkv.{p}"] = torch.cat([parts[f"query.{p}"], parts[f"key.{p}"],
                                                             parts[f"value.{p}"]])
            except KeyError:
                raise UserError(f"{where}: block {i} lacks its query/key/value {p}") from None
    depth = len({k.split(".")[1] for k in out if k.startswith("blocks.")})
    if depth != cfg.get("num_hidden_layers", depth) or out.get("cls_token") is None:
        raise UserError(f"{where}: config.json says {cfg.get('num_hidden_layers')} layers, the weights hold {depth}"
                        f"{'' if 'cls_token' in out else ' and no embeddings.cls_token'}")
    width = int(out["cls_token"].shape[-1])
    if width != cfg.get("hidden_size", width):
        raise UserError(f"{where}: config.json hidden_size={cfg.get('hidden_size')}, the weights are {width} wide")
    registers = cfg.get("num_register_tokens", 0) if cfg["model_type"] == "dinov2_with_registers" else 0
    if registers != (int(out["reg_token"].shape[1]) if "reg_token" in out else 0):
        raise UserError(f"{where}: config.json num_register_tokens={registers} does not match the weights")
    network = {"heads": int(cfg.get("num_attention_heads", 0)) or None,
               "norm_eps": float(cfg.get("layer_norm_eps", 1e-12 if cfg["model_type"] == "vit" else 1e-6)),
               "pos_offset": 0.0, "pos_antialias": cfg["model_type"] == "dinov2_with_registers"}
    return out, network, dropped, VIT_TYPES[cfg["model_type"]]


def _resnet_in(sd: dict[str, Tensor], cfg: dict[str, Any], where: str) -> tuple[dict[str, Tensor], dict[str, Any],
                                                                                 list[str], str]:
    _check(cfg, where, hidden_act="relu", downsample_in_bottleneck=False, downsample_in_first_stage=False,
           embedding_size=64, num_channels=3)
    arch = RESNETS.get((cfg.get("layer_type"), tuple(cfg.get("depths") or ())))
    if arch is None:
        raise UserError(f"{where}: config.json layer_type={cfg.get('layer_type')!r} depths={cfg.get('depths')} is "
                        f"no ResNet-18/34/50/101")
    out: dict[str, Tensor] = {}
    for key, t in sd.items():
        name = _resnet_name(key)
        if name is None:
            raise UserError(f"{where}: unexpected tensor {key} for a transformers resnet model")
        out[name] = t
    return out, {}, [], arch


def _resnet_name(key: str) -> str | None:
    m = re.fullmatch(r"embedder\.embedder\.(convolution|normalization)\.(\w+)", key)
    if m:
        return f"{'conv1' if m.group(1) == 'convolution' else 'bn1'}.{m.group(2)}"
    m = re.fullmatch(r"encoder\.stages\.(\d)\.layers\.(\d+)\.(shortcut|layer\.(\d))\."
                     r"(convolution|normalization)\.(\w+)", key)
    if not m:
        return None
    block = f"layer{int(m.group(1)) + 1}.{m.group(2)}"
    if m.group(3) == "shortcut":
        return f"{block}.downsample.{0 if m.group(5) == 'convolution' else 1}.{m.group(6)}"
    n = int(m.group(4)) + 1
    return f"{block}.{'conv' if m.group(5) == 'convolution' else 'bn'}{n}.{m.group(6)}"


def from_simxir(model: torch.nn.Module, template: dict[str, Any] | None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(the transformers state dict, config.json) of one of simxir's ViTs or ResNets; ``template``: the
    config.json the encoder came with (kept, with the architecture fields set from the model)."""
    sd = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    arch = str(getattr(model, "arch", ""))
    if "patch_embed.proj.weight" in sd:
        return _vit_out(model, sd, template)
    kind = next((k for k, a in RESNETS.items() if a == arch), None)
    if kind is None:
        raise UserError(f"--to transformers: {arch or type(model).__name__} has no transformers counterpart "
                        f"(ViTs, ResNet-18/34/50/101 with the ImageNet stem)")
    out = {}
    for name, t in sd.items():
        out[_resnet_hf_name(name)] = t
    cfg = {"architectures": ["ResNetModel"], "model_type": "resnet", "depths": list(kind[1]), "layer_type": kind[0],
           "hidden_sizes": [64 * 2 ** i * (4 if kind[0] == "bottleneck" else 1) for i in range(4)],
           "embedding_size": 64, "hidden_act": "relu", "downsample_in_bottleneck": False,
           "downsample_in_first_stage": False, "num_channels": 3}
    return out, {**(template or {}), **cfg}


def _resnet_hf_name(name: str) -> str:
    head, _, rest = name.partition(".")
    if head in ("conv1", "bn1"):
        return f"embedder.embedder.{'convolution' if head == 'conv1' else 'normalization'}.{rest}"
    stage = int(head.removeprefix("layer")) - 1
    block, _, rest = rest.partition(".")
    part, _, leaf = rest.partition(".")
    base = f"encoder.stages.{stage}.layers.{block}"
    if part == "downsample":
        idx, _, leaf = leaf.partition(".")
        return f"{base}.shortcut.{'convolution' if idx == '0' else 'normalization'}.{leaf}"
    kind, n = part[:-1], int(part[-1]) - 1
    return f"{base}.layer.{n}.{'convolution' if kind == 'conv' else 'normalization'}.{leaf}"


def _vit_out(model: Any, sd: dict[str, Tensor], template: dict[str, Any] | None) -> tuple[dict[str, Tensor],
                                                                                           dict[str, Any]]:
    kind = (template or {}).get("model_type") or ("dinov2_with_registers" if model.num_registers else
                                                  "dinov2" if "blocks.0.ls1.gamma" in sd else "vit")
    if kind not in VIT_TYPES:
        raise UserError(f"--to transformers: the template config is a {kind!r} model, not a ViT")
    if model.num_registers and kind != "dinov2_with_registers":
        raise UserError(f"--to transformers: a ViT with registers is a dinov2_with_registers model, not {kind}")
    top = {v: k for k, v in _VIT_TOP.items()}
    block = {"norm1": "layernorm_before" if kind == "vit" else "norm1",
             "norm2": "layernorm_after" if kind == "vit" else "norm2",
             "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense" if kind == "vit" else "mlp.fc1",
             "mlp.fc2": "output.dense" if kind == "vit" else "mlp.fc2"}
    out: dict[str, Tensor] = {}
    d = model.embed_dim
    for name, t in sd.items():
        m = re.fullmatch(r"blocks\.(\d+)\.(.+)\.(weight|bias|gamma)", name)
        if name in top:
            out[top[name]] = t
        elif m and m.group(2) == "attn.qkv":
            for i, part in enumerate(("query", "key", "value")):
                out[f"encoder.layer.{m.group(1)}.attention.attention.{part}.{m.group(3)}"] = t[i * d:(i + 1) * d]
        elif m and m.group(2) in ("ls1", "ls2"):
            if kind == "vit":
                raise UserError("--to transformers: this ViT has layer scale, which ViTModel lacks (use a dinov2 "
                                "template)")
            out[f"encoder.layer.{m.group(1)}.layer_scale{m.group(2)[-1]}.lambda1"] = t
        elif m and m.group(2) in block:
            out[f"encoder.layer.{m.group(1)}.{block[m.group(2)]}.{m.group(3)}"] = t
        else:
            raise UserError(f"--to transformers: no transformers name for {name}")
    if kind != "vit":
        out["embeddings.mask_token"] = torch.zeros(1, d)
    if kind == "dinov2" and "blocks.0.ls1.gamma" not in sd:
        raise UserError("--to transformers: Dinov2Model has layer scale; this ViT has none (use a vit template)")
    grid = int(sd["pos_embed"].shape[1]) - 1
    patch = int(sd["patch_embed.proj.weight"].shape[-1])
    cfg = {"architectures": [VIT_TYPES[kind]], "model_type": kind, "hidden_size": d,
           "num_hidden_layers": len(model.blocks), "num_attention_heads": model.heads, "patch_size": patch,
           "image_size": int(round(grid ** 0.5)) * patch, "layer_norm_eps": model.norm_eps, "hidden_act": "gelu",
           "qkv_bias": True, "num_channels": 3}
    if kind == "vit":
        cfg["intermediate_size"] = int(sd["blocks.0.mlp.fc1.weight"].shape[0])
    else:
        cfg.update(mlp_ratio=int(sd["blocks.0.mlp.fc1.weight"].shape[0]) // d, use_swiglu_ffn=False,
                   layerscale_value=1.0)
        if kind == "dinov2_with_registers":
            cfg["num_register_tokens"] = model.num_registers
    return out, {**(template or {}), **cfg}


def write_folder(model: torch.nn.Module, folder: Path, template: Path | None) -> None:
    """``folder/config.json`` + ``folder/model.safetensors`` that ``AutoModel.from_pretrained`` loads;
    ``template``: the encoder's original folder (its config.json, preprocessor_config.json and the
    tensors that are not the backbone, such as ViTModel's pooler, kept)."""
    base = read_config(template) if template is not None else None
    sd, cfg = from_simxir(model, base)
    if template is not None:
        kept = read_weights(template, None, safetensors_only=True)
        sd.update({k: v for k, v in kept.items() if k.startswith("pooler.")})
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / WEIGHTS, save(sd, metadata={"format": "pt"}))
    atomic_write_bytes(folder / CONFIG, (json.dumps(cfg, indent=2) + "\n").encode())
    if template is not None and (template / PREPROCESSOR).is_file():
        atomic_write_bytes(folder / PREPROCESSOR, (template / PREPROCESSOR).read_bytes())

