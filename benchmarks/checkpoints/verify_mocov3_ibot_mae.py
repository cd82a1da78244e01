"""Verify simxir's ViT layouts ``moco`` (MoCo v3), ``ibot`` and ``mae`` against the source code's own
models: MoCo v3's ``vits.py`` + ``moco/builder.py`` (facebookresearch/moco-v3@c349e6e), iBOT's
``models/vision_transformer.py`` + ``models/head.py`` + ``utils.py`` (bytedance/ibot@da316d8) and MAE's
``models_mae.py`` + ``models_vit.py`` + ``util/pos_embed.py`` (facebookresearch/mae@efb2a80), all built
on timm 0.4.9 (MoCo v3 pins it; MAE pins 0.3.2, whose Block and VisionTransformer 0.4.9 keeps), in the
same four stages as verify_vit.py:

    SRC=/tmp/vit-src     # SRC/moco-v3/{vits.py,moco/}, SRC/ibot/{models/,utils.py}, SRC/mae/{models_*.py,util/}
    VENV=/tmp/venv-timm  # torch==2.13.0 numpy==1.23.5 (MAE uses np.float) pillow, timm==0.4.9 --no-deps,
                         # torchvision's python files (as run_all.sh installs them)
    $VENV/bin/python benchmarks/checkpoints/verify_mocov3_ibot_mae.py source OUT SRC
    .venv/bin/python benchmarks/checkpoints/verify_mocov3_ibot_mae.py check OUT
    $VENV/bin/python benchmarks/checkpoints/verify_mocov3_ibot_mae.py roundtrip OUT SRC
    .venv/bin/python benchmarks/checkpoints/verify_mocov3_ibot_mae.py table OUT

The files, each written the way its project does:
- ``mocov3-full``: main_moco.py's ``{"epoch", "arch": "vit_small", "state_dict": DDP(MoCo_ViT(vit_small))
  .state_dict(), "optimizer", "scaler"}`` (base and momentum encoders filled differently);
- ``mocov3-deit``: convert_to_deit.py's ``{"model": base encoder without head}`` (read with --format moco);
- ``ibot-full``: main_ibot.py's ``{"student": DDP(MultiCropWrapper(vit_small(masked_im_modeling), iBOTHead)),
  "teacher": MultiCropWrapper(vit_small, iBOTHead), "optimizer", "epoch", "args", "ibot_loss"}``;
- ``ibot-teacher``: extract_backbone_weights.py's ``{"state_dict": teacher backbone}`` of a layer-scale
  model (``init_values=0.1``: ``gamma_1``/``gamma_2``), read with --format ibot;
- ``mae-full``: main_pretrain.py's ``{"model": MaskedAutoencoderViT.state_dict(), "optimizer", "epoch",
  "scaler", "args"}`` (a ViT-S/16 encoder, decoder 128-d x 2 blocks);
- ``mae-encoder``: the released ``mae_pretrain_vit_*.pth`` layout, ``{"model": encoder}``.
Reference features: the CLS token after the final norm of the model each project evaluates: MoCo v3's
base encoder without its projection head (224 px only: timm 0.4's patch embedding fixes the size);
iBOT's teacher backbone at 224 and 160 (its own interpolate_pos_encoding); MAE's models_vit (global_pool
False) loaded as main_finetune.py does (interpolate_pos_embed, then load_state_dict) at 224 and 160,
checked against MaskedAutoencoderViT.forward_encoder(x, mask_ratio=0) at 224. Fixtures (each part's
keys, shapes and fill seed, the file's other fields, the features) go to tests/models/fixtures/vit/.
"""

from __future__ import annotations

import importlib
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import (  # noqa: E402
    check_vit,
    export_difference,
    max_feature_difference,
    roundtrip_rows,
    run_stage,
    vit_features,
    write_table,
)
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "vit"
# name -> (format simxir detects or is told, description, sizes, --format passed)
LAYOUTS = {
    "mocov3-full": ("moco", "MoCo v3 main_moco.py checkpoint (DDP MoCo_ViT, ViT-S/16, 12 heads)", (224,), None),
    "mocov3-deit": ("moco", "MoCo v3 convert_to_deit.py output, --format moco", (224,), "moco"),
    "ibot-full": ("ibot", "iBOT main_ibot.py checkpoint (teacher + DDP student with masked_embed)", (224, 160),
                  None),
    "ibot-teacher": ("ibot", "iBOT extract_backbone_weights.py teacher, layer scale, --format ibot", (224, 160),
                     "ibot"),
    "mae-full": ("mae", "MAE main_pretrain.py checkpoint (encoder + decoder, ViT-S/16)", (224, 160), None),
    "mae-encoder": ("mae", "MAE released encoder {'model': ...}, --format mae", (224, 160), "mae"),
}
SEED = {"mocov3-full": 21, "mocov3-deit": 22, "ibot-full": 23, "ibot-teacher": 24, "mae-full": 25, "mae-encoder": 26}
_LOADED: dict[str, Any] = {}


def _import(src: Path, project: str, module: str) -> Any:
    """``module`` of one project: its folder first on sys.path, the other projects' same-named
    modules (utils, models, util) out of sys.modules while it imports."""
    key = f"{project}:{module}"
    if key not in _LOADED:
        for name in [m for m in sys.modules if m.split(".")[0] in ("utils", "models", "util", "vits", "moco",
                                                                   "models_mae", "models_vit")]:
            del sys.modules[name]
        sys.path.insert(0, str(src / project))
        try:
            _LOADED[key] = importlib.import_module(module)
        finally:
            sys.path.remove(str(src / project))
    return _LOADED[key]


def _fill_into(module: nn.Module, seed: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Fill ``module`` deterministically from the keys it is saved under (``prefix`` + its own)."""
    keys = [(prefix + k, list(v.shape)) for k, v in module.state_dict().items()]
    sd = fill(keys, seed)
    module.load_state_dict({k.removeprefix(prefix): v for k, v in sd.items()})
    return sd


def _mocov3(src: Path) -> tuple[Any, Any]:
    return _import(src, "moco-v3", "vits"), _import(src, "moco-v3", "moco.builder")


def _mae_vit(src: Path, size: int) -> nn.Module:
    mv = _import(src, "mae", "models_vit")
    return mv.VisionTransformer(img_size=size, patch_size=16, embed_dim=384, depth=12, num_heads=6, mlp_ratio=4,
                                qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), num_classes=0,
                                global_pool=False)


def _mae_encoder_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(("decoder_", "mask_token"))}


def _mae_features(src: Path, encoder: dict[str, torch.Tensor], sizes: tuple[int, ...]) -> dict[str, list]:
    """What main_finetune.py evaluates: models_vit at each size, interpolate_pos_embed, load_state_dict."""
    pe = _import(src, "mae", "util.pos_embed")
    out = {}
    for s in sizes:
        model = _mae_vit(src, s)
        ck = dict(encoder)
        pe.interpolate_pos_embed(model, ck)
        model.load_state_dict(ck, strict=True)
        out.update(vit_features(model.eval().forward_features, (s,)))
    return out


def _build(name: str, src: Path) -> tuple[Any, dict[str, Any], dict[str, list]]:
    """(file object, fixture parts {path: {"keys", "fill_seed", "prefix"}} + "top", reference features)."""
    seed, sizes = SEED[name], LAYOUTS[name][2]
    if name.startswith("mocov3"):
        vits, builder = _mocov3(src)
        torch.manual_seed(seed)
        moco = builder.MoCo_ViT(partial(vits.vit_small, stop_grad_conv1=True), dim=64, mlp_dim=256, T=0.2)
        if name == "mocov3-full":
            sd = _fill_into(moco, seed, "module.")
            obj = {"epoch": 300, "arch": "vit_small", "state_dict": sd, "optimizer": {}, "scaler": {}}
            parts = {"state_dict": seed}
        else:
            enc = moco.base_encoder
            enc.head = nn.Identity()
            sd = _fill_into(enc, seed)
            obj, parts = {"model": sd}, {"model": seed}
        enc = moco.base_encoder
        enc.head = nn.Identity()
        return obj, {"parts": parts, "keys": {p: [[k, list(v.shape)] for k, v in sd.items()] for p in parts},
                     "top": {k: v for k, v in obj.items() if k not in parts}}, vit_features(enc.eval(), sizes)
    if name.startswith("ibot"):
        vt = _import(src, "ibot", "models.vision_transformer")
        head = _import(src, "ibot", "models.head")
        utils = _import(src, "ibot", "utils")
        if name == "ibot-full":
            def wrapper(s: int, student: bool) -> tuple[nn.Module, dict]:
                torch.manual_seed(s)
                w = utils.MultiCropWrapper(vt.vit_small(patch_size=16, return_all_tokens=True,
                                                        masked_im_modeling=student),
                                           head.iBOTHead(384, 256, patch_out_dim=256, shared_head=True))
                return w, _fill_into(w, s, "module." if student else "")

            student, ssd = wrapper(seed + 100, True)
            teacher, tsd = wrapper(seed, False)
            obj = {"student": ssd, "teacher": tsd, "optimizer": {}, "epoch": 100, "args": None,
                   "ibot_loss": {"center": torch.zeros(1, 256)}}
            fx = {"parts": {"teacher": seed, "student": seed + 100},
                  "keys": {"teacher": [[k, list(v.shape)] for k, v in tsd.items()],
                           "student": [[k, list(v.shape)] for k, v in ssd.items()]},
                  "top": {"optimizer": {}, "epoch": 100, "args": None, "ibot_loss": {}}}
            return obj, fx, vit_features(lambda x: teacher.backbone.eval()(x, return_all_tokens=False), sizes)
        torch.manual_seed(seed)
        model = vt.vit_small(patch_size=16, init_values=0.1)
        sd = _fill_into(model, seed)
        return {"state_dict": sd}, {"parts": {"state_dict": seed},
                                    "keys": {"state_dict": [[k, list(v.shape)] for k, v in sd.items()]},
                                    "top": {}}, vit_features(model.eval(), sizes)
    mm = _import(src, "mae", "models_mae")
    torch.manual_seed(seed)
    mae = mm.MaskedAutoencoderViT(img_size=224, patch_size=16, embed_dim=384, depth=12, num_heads=6,
                                  decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, mlp_ratio=4,
                                  norm_layer=partial(nn.LayerNorm, eps=1e-6))
    if name == "mae-full":
        full = sd = _fill_into(mae, seed)
    else:   # the encoder's keys alone are filled (the fixture holds only them); the decoder is left as built
        sd = fill([(k, list(v.shape)) for k, v in _mae_encoder_keys(mae.state_dict()).items()], seed)
        mae.load_state_dict(sd, strict=False)
        full = mae.state_dict()
    obj = {"model": sd, "optimizer": {}, "epoch": 799, "scaler": {}, "args": None} if name == "mae-full" \
        else {"model": sd}
    feats = _mae_features(src, _mae_encoder_keys(full), sizes)
    # MAE's own encoder, nothing masked (its patches shuffled; the CLS token does not care)
    latent = vit_features(lambda x: mae.eval().forward_encoder(x, 0.0)[0][:, 0], (224,))
    gap = max_feature_difference(latent, feats)
    assert gap < 1e-5, f"models_mae and models_vit disagree by {gap}"
    return obj, {"parts": {"model": seed}, "keys": {"model": [[k, list(v.shape)] for k, v in sd.items()]},
                 "top": {k: v for k, v in obj.items() if k != "model"}}, feats


def source(out: Path, src: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name in LAYOUTS:
        obj, fx, feats = _build(name, src)
        torch.save(obj, out / f"{name}.pth")
        fx = {"layout": name, **fx, "features": feats}
        (FIXTURES / f"{name}.json").write_text(json.dumps(fx))
        print(name, {p: len(k) for p, k in fx["keys"].items()}, "tensors")


def check(out: Path) -> None:
    rows = [check_vit(out, name, fmt, json.loads((FIXTURES / f"{name}.json").read_text())["features"], forced)
            for name, (fmt, _, _, forced) in LAYOUTS.items()]
    (out / "check.json").write_text(json.dumps(rows, indent=1))


def _source_backbone(name: str, src: Path, obj: dict) -> tuple[nn.Module, dict[str, list]]:
    """The export strict-loaded the way its project reads a pretrained model, and its features."""
    sizes = LAYOUTS[name][2]
    if name.startswith("mocov3"):
        vits, _ = _mocov3(src)
        model = vits.vit_small()
        model.head = nn.Identity()
        if "state_dict" in obj:   # main_lincls.py: module.base_encoder.* without the head
            sd = {k.removeprefix("module.base_encoder."): v for k, v in obj["state_dict"].items()
                  if k.startswith("module.base_encoder.") and not k.startswith("module.base_encoder.head")}
        else:
            sd = obj["model"]
        model.load_state_dict(sd, strict=True)
        return model, vit_features(model.eval(), sizes)
    if name.startswith("ibot"):
        vt = _import(src, "ibot", "models.vision_transformer")
        model = vt.vit_small(patch_size=16, init_values=0.1 if name == "ibot-teacher" else 0)
        if "teacher" in obj:      # iBOT's eval scripts: checkpoint_key teacher, prefixes stripped
            sd = {k.removeprefix("backbone."): v for k, v in obj["teacher"].items() if not k.startswith("head.")}
        else:
            sd = obj["state_dict"]
        model.load_state_dict(sd, strict=True)
        return model, vit_features(model.eval(), sizes)
    enc = _mae_encoder_keys(obj["model"])
    _mae_vit(src, 224).load_state_dict(enc, strict=True)
    return None, _mae_features(src, enc, sizes)


def roundtrip(out: Path, src: Path) -> None:
    def strict_load(name: str) -> dict:
        fx = json.loads((FIXTURES / f"{name}.json").read_text())
        return export_difference(out, name, fx["features"], lambda obj: _source_backbone(name, src, obj)[1])

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    rows = json.loads((out / "roundtrip.json").read_text())
    for r in rows:
        r["layout"] = f"{r['layout']}: {LAYOUTS[r['layout']][1]}"
    write_table(rows, "mocov3_ibot_mae", "MoCo v3 / iBOT / MAE",
                "ViT checkpoints of MoCo v3, iBOT and MAE, against their own code")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
