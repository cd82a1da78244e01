"""Hold simxir's DINO pieces against DINO's own code (facebookresearch/dino, run as it is):
``DINOLoss.forward`` and its centre update (main_dino.py), ``DINOHead`` (vision_transformer.py),
``cosine_scheduler`` (utils.py).

* the loss and its gradient with respect to the student logits, float64, for 2, 4 and 10 crops
  (2 global) at several epochs of the teacher-temperature warm-up; the centre after the update;
* DINO's head state_dict loads strictly into simxir's ``DINOHead`` (and back) with identical
  outputs, for the ViT setting (no BN, norm_last_layer) and the ResNet one (BN, free last norm);
* the teacher-momentum and weight-decay schedules per step;
* checkpoint.pth both ways, for a ViT (vit_tiny, patch 8, 32 px) and a ResNet-18 (torchvision's names,
  BN: DINO's teacher is then DDP-wrapped): a checkpoint saved as main_dino.py saves it (student in
  DDP, teacher, optimizer, args, dino_loss) starts simxir's DINO (``method.init``) with the same
  student, teacher and centre (outputs equal); simxir's ``dino_checkpoint`` loads into DINO's own
  modules strictly and through DINO's ``utils.restart_from_checkpoint``, outputs equal.

Usage (repo root, simxir's venv; SRC: a checkout of https://github.com/facebookresearch/dino):
    python benchmarks/checkpoints/verify_dino_official.py SRC [--out results/checkpoints/dino-official.json]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from simxir.methods.dino import DINOHead, cosine_value, dino_center, dino_loss, teacher_temperature

ROOT = Path(__file__).resolve().parents[2]


def dino_loss_class(src: Path) -> type:
    """``DINOLoss`` from main_dino.py, its class source executed as written (the file itself imports
    torchvision, which this environment does not need)."""
    tree = ast.parse((src / "main_dino.py").read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "DINOLoss")
    namespace = {"torch": torch, "nn": nn, "F": F, "np": np, "dist": dist}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(src / "main_dino.py"), "exec"), namespace)  # noqa: S102
    return namespace["DINOLoss"]


def official_modules(src: Path) -> tuple:
    sys.path.insert(0, str(src))
    import utils  # noqa: PLC0415 - DINO's utils.py
    import vision_transformer  # noqa: PLC0415 - DINO's

    return vision_transformer.DINOHead, utils.cosine_scheduler


def check_loss(loss_cls: type, crops: int, epoch: int, k: int = 64, b: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(crops * b, k, generator=g, dtype=torch.float64) * 3
    teacher = torch.randn(2 * b, k, generator=g, dtype=torch.float64) * 3
    center = torch.randn(1, k, generator=g, dtype=torch.float64) * 0.1
    official = loss_cls(k, crops, 0.04, 0.07, 30, 100, student_temp=0.1, center_momentum=0.9).double()
    official.center = center.clone()
    s1 = student.clone().requires_grad_()
    ref = official(s1, teacher, epoch)
    ref.backward()
    temp = teacher_temperature(epoch, 100, 0.04, 0.07, 30)
    s2 = student.clone().requires_grad_()
    ours = dino_loss(s2, teacher, center, 0.1, temp, 2)
    ours.backward()
    new_center = dino_center(teacher, center, 0.9)
    return {"crops": crops, "epoch": epoch, "teacher_temp": temp,
            "temp_diff": abs(temp - float(official.teacher_temp_schedule[epoch])),
            "loss_diff": abs(float(ref) - float(ours)), "grad_diff": float((s1.grad - s2.grad).abs().max()),
            "center_diff": float((official.center - new_center).abs().max())}


def check_head(head_cls: type, use_bn: bool, norm_last_layer: bool) -> dict:
    torch.manual_seed(0)
    theirs = head_cls(384, 1000, use_bn=use_bn, norm_last_layer=norm_last_layer, hidden_dim=256, bottleneck_dim=64)
    with torch.no_grad():    # a last layer away from its init, so the weight norm matters
        theirs.last_layer.weight_g.mul_(torch.rand_like(theirs.last_layer.weight_g) + 0.5)
    ours = DINOHead(384, 1000, use_bn=use_bn, norm_last_layer=norm_last_layer, hidden_dim=256, bottleneck_dim=64)
    missing = ours.load_state_dict(theirs.state_dict(), strict=True)
    back = head_cls(384, 1000, use_bn=use_bn, norm_last_layer=norm_last_layer, hidden_dim=256, bottleneck_dim=64)
    back.load_state_dict(ours.state_dict(), strict=True)
    theirs.eval(), ours.eval(), back.eval()
    x = torch.randn(8, 384, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = float((theirs(x) - ours(x)).abs().max())
        back_diff = float((back(x) - theirs(x)).abs().max())
    trainable_g = [p.requires_grad for n, p in ours.named_parameters() if n.endswith("weight_g")]
    want_g = [p.requires_grad for n, p in theirs.named_parameters() if n.endswith("weight_g")]
    return {"use_bn": use_bn, "norm_last_layer": norm_last_layer, "keys": len(theirs.state_dict()),
            "strict_load": str(missing), "output_diff": diff, "roundtrip_diff": back_diff,
            "weight_g_trainable_equal": trainable_g == want_g}


class _DDPNames(nn.Module):
    """What DistributedDataParallel adds to the names: ``module.``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def check_checkpoint(src: Path, arch: str, tmp: Path) -> dict:
    """DINO's checkpoint.pth -> simxir's DINO (method.init) and simxir's dino_checkpoint -> DINO."""
    import argparse as ap  # noqa: PLC0415

    import utils  # noqa: PLC0415 - DINO's utils.py
    import vision_transformer as vits  # noqa: PLC0415 - DINO's

    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.methods.dino import dino_checkpoint  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415

    head = {"out_dim": 96, "hidden_dim": 64, "bottleneck_dim": 32, "use_bn_in_head": arch == "resnet18"}

    def official() -> tuple[nn.Module, nn.Module]:
        nets = []
        for _ in range(2):
            if arch == "vit":
                net, dim = vits.vit_tiny(patch_size=8, img_size=[32], drop_path_rate=0.1), 192
            else:
                net, dim = build_backbone("resnet18"), 512    # torchvision's resnet18 names, without fc
            nets.append(utils.MultiCropWrapper(net, head_cls(dim, head["out_dim"], use_bn=head["use_bn_in_head"],
                                                             hidden_dim=64, bottleneck_dim=32)))
        return nets[0], nets[1]

    head_cls = vits.DINOHead
    simxir_arch = "vit-tiny-p8-32" if arch == "vit" else "resnet18"
    torch.manual_seed(0)
    student, teacher = official()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.01 * torch.randn_like(p))    # a teacher that is not the student
    loss = dino_loss_class(src)(head["out_dim"], 4, 0.04, 0.04, 0, 10)
    loss.center = torch.randn(1, head["out_dim"])
    wrapped_student, wrapped_teacher = _DDPNames(student), (_DDPNames(teacher) if arch != "vit" else teacher)
    opt = torch.optim.AdamW(utils.get_params_groups(student))
    theirs = tmp / f"dino-{arch}.pth"
    torch.save({"student": wrapped_student.state_dict(), "teacher": wrapped_teacher.state_dict(),
                "optimizer": opt.state_dict(), "epoch": 3, "args": ap.Namespace(arch=arch, out_dim=head["out_dim"]),
                "dino_loss": loss.state_dict()}, theirs)
    torch.manual_seed(5)
    ours = build_method("dino", build_backbone(simxir_arch), {**head, "init": str(theirs)}).eval()
    student.eval(), teacher.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        into = max(float((ours.head(ours.backbone(x)) - student(x)).abs().max()),
                   float((ours.teacher_head(ours.teacher_backbone(x)) - teacher(x)).abs().max()))
    center_in = float((ours.center - loss.center).abs().max())
    # back: simxir's checkpoint into fresh DINO modules, strictly and through restart_from_checkpoint
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.01)
    ours.center.add_(1.0)
    mine = tmp / f"simxir-{arch}.pth"
    torch.save(dino_checkpoint(ours, 7), mine)
    torch.manual_seed(9)
    s2, t2 = official()
    w2s, w2t = _DDPNames(s2), (_DDPNames(t2) if arch != "vit" else t2)
    saved = torch.load(mine, weights_only=True)
    strict = [str(w2s.load_state_dict(saved["student"], strict=True)),
              str(w2t.load_state_dict(saved["teacher"], strict=True))]
    loss2 = dino_loss_class(src)(head["out_dim"], 4, 0.04, 0.04, 0, 10)
    torch.manual_seed(11)
    s3, t3 = official()
    w3s, w3t = _DDPNames(s3), (_DDPNames(t3) if arch != "vit" else t3)
    utils.restart_from_checkpoint(str(mine), student=w3s, teacher=w3t, dino_loss=loss2)
    for m in (s2, t2, s3, t3):
        m.eval()
    with torch.no_grad():
        back = max(float((s2(x) - ours.head(ours.backbone(x))).abs().max()),
                   float((t2(x) - ours.teacher_head(ours.teacher_backbone(x))).abs().max()),
                   float((s3(x) - ours.head(ours.backbone(x))).abs().max()),
                   float((t3(x) - ours.teacher_head(ours.teacher_backbone(x))).abs().max()))
    return {"arch": arch, "into_simxir_output_diff": into, "into_simxir_center_diff": center_in,
            "back_strict_load": strict, "back_output_diff": back,
            "back_center_diff": float((loss2.center - ours.center).abs().max()), "epoch": saved["epoch"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="checkout of facebookresearch/dino")
    ap.add_argument("--out", type=Path, default=None,
                    help="write the JSON here (results/checkpoints/dino-official.json); default: print only")
    a = ap.parse_args()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29561")
    init = Path(tempfile.mkdtemp()) / "init"
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=0, world_size=1)   # DINOLoss all-reduces
    try:
        loss_cls = dino_loss_class(a.src)
        head_cls, cosine_scheduler = official_modules(a.src)
        losses = [check_loss(loss_cls, crops, epoch, seed=crops * 100 + epoch)
                  for crops in (2, 4, 10) for epoch in (0, 7, 29, 30, 99)]
        heads = [check_head(head_cls, bn, norm) for bn, norm in ((False, True), (True, False))]
        sched = {}
        for name, start, end in (("momentum", 0.996, 1.0), ("weight_decay", 0.04, 0.4)):
            ref = cosine_scheduler(start, end, 100, 50)
            ours = np.array([cosine_value(i, len(ref), start, end) for i in range(len(ref))])
            sched[name] = float(np.abs(ours - ref).max())
        with tempfile.TemporaryDirectory() as d:
            ckpts = [check_checkpoint(a.src, arch, Path(d)) for arch in ("vit", "resnet18")]
    finally:
        dist.destroy_process_group()
    ok = (all(r["loss_diff"] < 1e-6 and r["grad_diff"] < 1e-6 and r["center_diff"] < 1e-12 and r["temp_diff"] < 1e-12
              for r in losses)
          and all(h["output_diff"] < 1e-6 and h["roundtrip_diff"] == 0 and h["weight_g_trainable_equal"] for h in heads)
          and all(v < 1e-12 for v in sched.values())
          and all(c["into_simxir_output_diff"] < 1e-5 and c["back_output_diff"] < 1e-5
                  and c["into_simxir_center_diff"] == 0 and c["back_center_diff"] == 0 and c["epoch"] == 7
                  for c in ckpts))
    out = {"source": "facebookresearch/dino main_dino.py DINOLoss, vision_transformer.py DINOHead and vit_tiny, "
                     "utils.py cosine_scheduler, MultiCropWrapper, restart_from_checkpoint",
           "loss": losses, "head": heads, "schedules_max_diff": sched, "checkpoint": ckpts, "ok": ok}
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(out, indent=1))
    worst = {k: max(r[k] for r in losses) for k in ("loss_diff", "grad_diff", "center_diff", "temp_diff")}
    print(f"loss over {len(losses)} cases (2/4/10 crops x 5 epochs), worst: {worst}")
    for h in heads:
        print(f"head bn={h['use_bn']} norm_last_layer={h['norm_last_layer']}: strict load {h['strict_load']}, "
              f"output diff {h['output_diff']:.1e}, round trip {h['roundtrip_diff']:.1e}")
    for c in ckpts:
        print(f"checkpoint.pth {c['arch']}: DINO's -> simxir outputs {c['into_simxir_output_diff']:.1e}, simxir's -> "
              f"DINO outputs {c['back_output_diff']:.1e}, strict {c['back_strict_load']}")
    print(f"schedules: {sched}; {'OK' if ok else 'MISMATCH'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
