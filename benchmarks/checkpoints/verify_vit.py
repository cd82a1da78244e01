"""Verify simxir's ViT layouts (``dino``, ``dinov2``, ``timm``) against the source code's own models:
DINO's ``vision_transformer.py`` + ``utils.MultiCropWrapper`` (facebookresearch/dino@7c446df) and
DINOv2's ``dinov2/models/vision_transformer.py`` (facebookresearch/dinov2@b8931f7), in three stages:

    SRC=/tmp/vit-src          # SRC/dino/{vision_transformer,utils}.py, SRC/dinov2/dinov2/{models,layers}
    VENV=/tmp/venv-vit        # torch==2.13.0 numpy pillow (DINO's utils imports PIL)
    XFORMERS_DISABLED=1 $VENV/bin/python benchmarks/checkpoints/verify_vit.py source OUT SRC
    .venv/bin/python benchmarks/checkpoints/verify_vit.py check OUT
    XFORMERS_DISABLED=1 $VENV/bin/python benchmarks/checkpoints/verify_vit.py roundtrip OUT SRC
    .venv/bin/python benchmarks/checkpoints/verify_vit.py table OUT

``source`` builds each source model, fills its weights deterministically (fill.py) and saves it the
way the project does:
- ``dino-full``: main_dino.py's checkpoint ``{"student": DDP(MultiCropWrapper(vit_small/16, DINOHead))
  .state_dict(), "teacher": MultiCropWrapper(...).state_dict(), "optimizer", "epoch", "args",
  "dino_loss"}`` (teacher and student filled differently: the teacher must be taken);
- ``dino-backbone``: the released ``dino_deitsmall16_pretrain.pth`` layout (the bare ViT's state dict);
- ``dinov2``: the hub's ``dinov2_vits14_pretrain.pth`` (``vit_small(img_size=518, patch_size=14,
  init_values=1.0, block_chunks=0)``), and ``dinov2-reg``: ``dinov2_vits14_reg4`` (4 registers,
  interpolate_antialias=True, interpolate_offset=0).
Reference features: the source model's forward (the CLS token after the final norm) on a fixed input,
at the native size and at a second size (position embeddings interpolated by the source's own rule).
``check`` loads each file with simxir (features, max abs difference) and exports it back into the
original file; ``roundtrip`` strict-loads the export into the source model. Fixtures (keys, shapes,
fill seed, features) go to tests/models/fixtures/vit/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import check_vit, export_difference, roundtrip_rows, run_stage, vit_features, write_table  # noqa: E402
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "vit"
LAYOUTS = {"dino-full": ("dino", "DINO main_dino.py checkpoint (teacher + DDP student, ViT-S/16)", (224, 160)),
           "dino-backbone": ("dino", "DINO released backbone (bare ViT-S/16 state dict), --format dino", (224, 160)),
           "dinov2": ("dinov2", "DINOv2 hub ViT-S/14 (layer scale, mask_token)", (518, 224)),
           "dinov2-reg": ("dinov2", "DINOv2 hub ViT-S/14 + 4 registers", (518, 224))}
SEED = {"dino-full": 11, "dino-backbone": 12, "dinov2": 13, "dinov2-reg": 14}


def _sources(src: Path) -> None:
    sys.path[:0] = [str(src / "dino"), str(src / "dinov2")]


def _model(name: str) -> nn.Module:
    """The source backbone (what the checkpoint's evaluated part is)."""
    if name.startswith("dinov2"):
        from dinov2.models import vision_transformer as d2

        reg = name == "dinov2-reg"
        return d2.vit_small(img_size=518, patch_size=14, init_values=1.0, block_chunks=0,
                            num_register_tokens=4 if reg else 0, interpolate_antialias=reg,
                            interpolate_offset=0.0 if reg else 0.1)
    import vision_transformer as dv

    return dv.vit_small(patch_size=16)


def _filled(module: nn.Module, seed: int) -> nn.Module:
    sd = module.state_dict()
    module.load_state_dict(fill([(k, list(v.shape)) for k, v in sd.items()], seed))
    return module


def source(out: Path, src: Path) -> None:
    _sources(src)
    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, (_, _, sizes) in LAYOUTS.items():
        if name == "dino-full":
            import utils
            import vision_transformer as dv

            def wrapper(seed: int) -> nn.Module:
                torch.manual_seed(seed)
                return _filled(utils.MultiCropWrapper(_model("dino-full"), dv.DINOHead(384, 1024)), seed)

            student, teacher = wrapper(SEED[name] + 100), wrapper(SEED[name])
            obj = {"student": {f"module.{k}": v for k, v in student.state_dict().items()},   # DDP's keys
                   "teacher": teacher.state_dict(), "optimizer": {}, "epoch": 100, "args": None,
                   "dino_loss": {"center": torch.zeros(1, 1024)}}
            sd, backbone = teacher.state_dict(), teacher.backbone
        else:
            backbone = _filled(_model(name), SEED[name])
            sd = obj = backbone.state_dict()
        torch.save(obj, out / f"{name}.pth")
        fx = {"layout": name, "keys": [[k, list(v.shape)] for k, v in sd.items()], "fill_seed": SEED[name],
              "features": vit_features(backbone.eval(), sizes)}
        (FIXTURES / f"{name}.json").write_text(json.dumps(fx))
        print(name, len(sd), "tensors")


def check(out: Path) -> None:
    from simxir.models import load_encoder

    rows = []
    for name, (fmt, _, _) in LAYOUTS.items():
        fx = json.loads((FIXTURES / f"{name}.json").read_text())
        if name == "dino-backbone":   # a bare timm-named dict: detected as timm (same features at 224)
            assert load_encoder(out / f"{name}.pth")[1].format == "timm"
        rows.append(check_vit(out, name, fmt, fx["features"], "dino" if name == "dino-backbone" else None))
    (out / "check.json").write_text(json.dumps(rows, indent=1))


def roundtrip(out: Path, src: Path) -> None:
    _sources(src)

    def strict_load(name: str) -> dict:
        def source_features(obj: dict) -> dict[str, list]:
            model = _model(name)
            if "teacher" in obj:
                # what DINO's eval scripts do (utils.load_pretrained_weights, checkpoint_key teacher),
                # then a strict load of the backbone
                sd = {k.replace("module.", "").replace("backbone.", ""): v for k, v in obj["teacher"].items()
                      if not k.startswith("head.")}
            else:
                sd = obj
            model.load_state_dict(sd, strict=True)
            return vit_features(model.eval(), LAYOUTS[name][2])

        fx = json.loads((FIXTURES / f"{name}.json").read_text())
        return export_difference(out, name, fx["features"], source_features)

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    rows = json.loads((out / "roundtrip.json").read_text())
    for r in rows:
        r["layout"] = f"{r['layout']}: {LAYOUTS[r['layout']][1]}"
    write_table(rows, "vit", "DINO / DINOv2", "ViT checkpoints of DINO and DINOv2, against their own code")


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table}, sys.argv)
