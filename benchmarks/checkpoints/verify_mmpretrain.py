"""Verify simxir's ``mmpretrain`` layout against mmpretrain 1.2.0's own MoCo v2 algorithm and
mmengine 0.10.7's ``save_checkpoint``, in the venv of verify_lightly.py plus
``pip install mmengine mmcv-lite importlib_metadata modelindex rich mat4py`` and
``pip install --no-deps mmpretrain==1.2.0`` (mmcv-lite: mmcv without its compiled ops):

    VENV=/tmp/venv-lightly
    $VENV/bin/python benchmarks/checkpoints/verify_mmpretrain.py source OUT
    .venv/bin/python benchmarks/checkpoints/verify_mmpretrain.py check OUT
    $VENV/bin/python benchmarks/checkpoints/verify_mmpretrain.py roundtrip OUT
    .venv/bin/python benchmarks/checkpoints/verify_mmpretrain.py table OUT
    .venv/bin/python benchmarks/checkpoints/verify_mmpretrain.py mmselfsup OUT CONVERTER

``mmselfsup`` runs MMSelfSup's own ``tools/model_converters/extract_backbone_weights.py`` (open-mmlab/
mmselfsup at 1fcfd409, the 0.x tool; it needs only torch) on that checkpoint and checks simxir on
its ``{"state_dict": bare backbone, "author": "MMSelfSup"}`` output.

The model is ``mmpretrain.models.selfsup.MoCo`` as its ``mocov2_resnet50`` config builds it (ResNet-50
backbone, MoCoV2Neck, ContrastiveHead; ``encoder_k`` momentum copy and queue). The file is the dict
mmengine's ``Runner.save_checkpoint`` writes (``meta`` with the config text, whose
``default_scope = 'mmpretrain'``, ``state_dict``, ``message_hub``, ``optimizer``), written by
mmengine's own ``save_checkpoint``; a whole Runner would also need a dataset. Reference features:
the backbone's last stage, global-average-pooled (mmpretrain's linear evaluation neck).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from common import check_file, roundtrip_rows, run_stage, write_check, write_table  # noqa: E402
from fill import fill  # noqa: E402

FIXTURES = ROOT / "tests" / "models" / "fixtures" / "mmpretrain"
SIZE = 64
CFG_TEXT = ("default_scope = 'mmpretrain'\nmodel = dict(type='MoCo', queue_len=65536, feat_dim=128, "
            "momentum=0.001, backbone=dict(type='ResNet', depth=50, norm_cfg=dict(type='BN'), "
            "zero_init_residual=False), neck=dict(type='MoCoV2Neck', in_channels=2048, hid_channels=2048, "
            "out_channels=128, with_avg_pool=True), head=dict(type='ContrastiveHead', "
            "loss=dict(type='CrossEntropyLoss'), temperature=0.2))\n")


def _build():
    from mmpretrain.models.selfsup import MoCo
    from mmpretrain.utils import register_all_modules

    register_all_modules()
    return MoCo(backbone=dict(type="ResNet", depth=50, norm_cfg=dict(type="BN"), zero_init_residual=False),
                neck=dict(type="MoCoV2Neck", in_channels=2048, hid_channels=2048, out_channels=128,
                          with_avg_pool=True),
                head=dict(type="ContrastiveHead", loss=dict(type="CrossEntropyLoss"), temperature=0.2),
                queue_len=65536, feat_dim=128, momentum=0.001)


def _input() -> torch.Tensor:
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def _features(model) -> torch.Tensor:
    model.backbone.eval()
    with torch.no_grad():
        return model.backbone(_input())[-1].mean((2, 3))


def source(out: Path) -> None:
    import mmengine
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    out.mkdir(parents=True, exist_ok=True)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = _build()
    shapes = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    model.load_state_dict(fill(shapes))
    meta = {"cfg": CFG_TEXT, "seed": 0, "experiment_name": "mocov2_resnet50", "time": "20261202_000000",
            "mmengine_version": mmengine.__version__, "epoch": 1, "iter": 10}
    save_checkpoint({"meta": meta, "state_dict": weights_to_cpu(model.state_dict()), "message_hub": {},
                     "optimizer": {}}, str(out / "mocov2.pth"))
    feats = _features(model)
    torch.save(feats, out / "mocov2.features.pt")
    (FIXTURES / "mocov2.json").write_text(json.dumps({
        "layout": "mocov2", "meta": meta, "keys": shapes, "input_size": SIZE, "input_seed": 1, "fill_seed": 0,
        "features": [[round(float(v), 7) for v in r] for r in feats]}))
    print(f"mocov2: {len(shapes)} keys")


def check(out: Path) -> None:
    write_check(out, [check_file(out, "mocov2", ".pth", _input(), "mmpretrain")[0]])


def roundtrip(out: Path) -> None:
    def strict_load(name: str) -> dict:
        model = _build()
        model.load_state_dict(torch.load(out / f"{name}.export.pth", weights_only=False)["state_dict"], strict=True)
        ref = torch.load(out / f"{name}.features.pt")
        return {"export_feature_difference": float((_features(model) - ref).abs().max())}

    roundtrip_rows(out, strict_load)


def table(out: Path) -> None:
    write_table(json.loads((out / "roundtrip.json").read_text()), "mmpretrain", "mmpretrain",
                "mmpretrain checkpoints made by mmpretrain's and mmengine's own code")


def mmselfsup(out: Path, converter: Path) -> None:
    import subprocess

    sys.path.insert(0, str(ROOT / "src"))
    from simxir.models import export_encoder, load_encoder

    subprocess.run([sys.executable, str(converter), str(out / "mocov2.pth"), str(out / "backbone.pth")], check=True)
    obj = torch.load(out / "backbone.pth", weights_only=True)
    model, report = load_encoder(out / "backbone.pth")
    model.eval()
    ref = torch.load(out / "mocov2.features.pt")
    with torch.no_grad():
        diff = float((model(_input()) - ref).abs().max())
    export_encoder(model, out / "backbone.export.pth", "mmselfsup")
    back = torch.load(out / "backbone.export.pth", weights_only=True)
    same_keys = {k: list(v.shape) for k, v in back["state_dict"].items()} == \
        {k: list(v.shape) for k, v in obj["state_dict"].items()}
    again, _ = load_encoder(out / "backbone.export.pth")
    with torch.no_grad():
        diff_back = float((again.eval()(_input()) - ref).abs().max())
    (FIXTURES / "mmselfsup-backbone.json").write_text(json.dumps({
        "top_level": sorted(obj), "author": obj["author"],
        "keys": [(k, list(v.shape)) for k, v in obj["state_dict"].items()]}))
    line = (f"| MMSelfSup 0.x extract_backbone_weights.py output | {report.format} | {report.arch} | "
            f"{len(report.loaded)} / {len(report.dropped)} | {report.network} | {diff:.2g} | "
            f"same keys and shapes: {'yes' if same_keys else 'no'}, {diff_back:.2g} |")
    dest = ROOT / "results" / "checkpoints" / "mmpretrain.md"
    dest.write_text(dest.read_text().rstrip() + "\n" + line + "\n")
    print(line)


if __name__ == "__main__":
    run_stage({"source": source, "check": check, "roundtrip": roundtrip, "table": table, "mmselfsup": mmselfsup},
              sys.argv)
