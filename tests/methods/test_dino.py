"""DINO's pieces against independently written formulas (the check against DINO's own code is
benchmarks/checkpoints/verify_dino_official.py, results/checkpoints/dino-official.json)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simxir.errors import UserError
from simxir.methods.dino import DINOHead, cosine_value, dino_center, dino_loss, teacher_temperature


def _loop_loss(student, teacher, center, ts, tt, n_global):  # noqa: ANN001, ANN202
    """Sample by sample: -sum_k q_k log p_k for every (teacher global i, student crop v != i)."""
    b = teacher.shape[0] // n_global
    crops = student.shape[0] // b
    terms = []
    for i in range(n_global):
        for v in range(crops):
            if v == i:
                continue
            per = []
            for n in range(b):
                t = teacher[i * b + n] - center[0]
                q = [math.exp(x / tt) for x in t.tolist()]
                q = [x / sum(q) for x in q]
                s = (student[v * b + n] / ts).tolist()
                m = max(s)
                logz = m + math.log(sum(math.exp(x - m) for x in s))
                per.append(-sum(qk * (sk - logz) for qk, sk in zip(q, s)))
            terms.append(sum(per) / b)
    return sum(terms) / len(terms)


@pytest.mark.parametrize("crops", [2, 4, 10])
def test_loss_equals_the_pairwise_cross_entropy(crops):
    g = torch.Generator().manual_seed(crops)
    b, k = 3, 7
    student = torch.randn(crops * b, k, generator=g, dtype=torch.float64) * 2
    teacher = torch.randn(2 * b, k, generator=g, dtype=torch.float64) * 2
    center = torch.randn(1, k, generator=g, dtype=torch.float64) * 0.3
    got = dino_loss(student.requires_grad_(), teacher, center, 0.1, 0.05, 2)
    assert float(got) == pytest.approx(_loop_loss(student.detach(), teacher, center, 0.1, 0.05, 2), rel=1e-12)
    got.backward()
    assert student.grad is not None and torch.isfinite(student.grad).all()


def test_teacher_gets_no_gradient_and_bad_layouts_are_refused():
    s, t = torch.randn(6, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    dino_loss(s, t, torch.zeros(1, 5), 0.1, 0.04, 2).backward()
    assert t.grad is None and s.grad is not None
    with pytest.raises(UserError, match="global crops"):
        dino_loss(torch.randn(6, 5), torch.randn(5, 5), torch.zeros(1, 5), 0.1, 0.04, 2)
    with pytest.raises(UserError, match="whole crops"):
        dino_loss(torch.randn(7, 5), torch.randn(4, 5), torch.zeros(1, 5), 0.1, 0.04, 2)
    with pytest.raises(UserError, match="temperatures"):
        dino_loss(torch.randn(4, 5), torch.randn(4, 5), torch.zeros(1, 5), 0.0, 0.04, 2)


def test_center_is_an_ema_of_the_teacher_mean():
    t, c = torch.randn(10, 4, dtype=torch.float64), torch.randn(1, 4, dtype=torch.float64)
    torch.testing.assert_close(dino_center(t, c, 0.9), 0.9 * c + 0.1 * t.mean(0, keepdim=True))


def test_schedules_follow_dinos_definitions():
    want = np.concatenate((np.linspace(0.04, 0.07, 30), np.ones(70) * 0.07))     # main_dino.py's
    assert [teacher_temperature(e, 100, 0.04, 0.07, 30) for e in range(100)] == pytest.approx(list(want), abs=1e-15)
    total = 200
    ref = 1.0 + 0.5 * (0.996 - 1.0) * (1 + np.cos(np.pi * np.arange(total) / total))   # utils.cosine_scheduler's
    assert [cosine_value(i, total, 0.996, 1.0) for i in range(total)] == pytest.approx(list(ref), abs=1e-15)
    with pytest.raises(UserError):
        teacher_temperature(0, 10, 0.04, 0.07, 30)


def test_the_method_follows_the_runs_temperature_schedule_and_refuses_a_longer_warm_up():
    m = _dino(warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_epochs=3)
    m.use_epochs(10)
    got = []
    for e in range(10):
        m.on_epoch_start(e)
        got.append(m.teacher_temp())
    want = np.concatenate((np.linspace(0.04, 0.07, 3), np.ones(7) * 0.07))       # main_dino.py's
    assert got == pytest.approx(list(want), abs=1e-15)
    with pytest.raises(UserError, match="method.warmup_teacher_temp_epochs: 3 warm-up epochs exceed the run's 2"):
        m.use_epochs(2)


def test_head_loads_a_weight_normed_state_dict_strictly_with_identical_outputs():
    """The state_dict of nn.utils.weight_norm (what DINO's DINOHead uses) loads strictly."""
    torch.manual_seed(0)
    ours = DINOHead(12, 50, use_bn=True, norm_last_layer=False, hidden_dim=16, bottleneck_dim=8)
    last = torch.nn.utils.weight_norm(torch.nn.Linear(8, 50, bias=False))
    with torch.no_grad():
        last.weight_g.mul_(torch.rand_like(last.weight_g) + 0.5)
    state = {**{k: v for k, v in ours.state_dict().items() if not k.startswith("last_layer.")},
             **{f"last_layer.{k}": v for k, v in last.state_dict().items()}}
    ours.load_state_dict(state, strict=True)
    ours.eval()
    x = torch.randn(5, 12)
    with torch.no_grad():
        z = torch.nn.functional.normalize(ours.mlp(x), dim=-1)
        torch.testing.assert_close(ours(x), last(z))
    frozen = DINOHead(12, 50, hidden_dim=16, bottleneck_dim=8)
    assert not frozen.last_layer.weight_g.requires_grad and bool((frozen.last_layer.weight_g == 1).all())
    assert [type(m).__name__ for m in frozen.mlp] == ["Linear", "GELU", "Linear", "GELU", "Linear"]


# ---------------------------------------------------------------------------------------------
# the method: student on every crop, EMA teacher on the global crops

class _Flat(torch.nn.Module):
    """A backbone without BatchNorm, so per-view and grouped forwards agree exactly."""

    feature_dim = 12

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 12)

    def forward(self, x):  # noqa: ANN001, ANN201
        return torch.tanh(self.lin(x.mean(dim=(2, 3))))


def _dino(**kw):  # noqa: ANN202
    from simxir.methods import build_method

    torch.manual_seed(0)
    return build_method("dino", _Flat(), {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, **kw})


def _views(n_local: int, b: int = 5):  # noqa: ANN202
    g = torch.Generator().manual_seed(1)
    return [torch.randn(b, 3, 8, 8, generator=g) for _ in range(2)] + \
        [torch.randn(b, 3, 4, 4, generator=g) for _ in range(n_local)]


@pytest.mark.parametrize("n_local", [0, 3])
def test_method_loss_is_dino_loss_of_per_view_logits_and_the_centre_moves(n_local):
    m = _dino(warmup_teacher_temp=0.02, teacher_temp=0.06, warmup_teacher_temp_epochs=3)
    m.use_views(2, n_local)
    m.on_epoch_start(1)
    views = _views(n_local)
    with torch.no_grad():
        student = torch.cat([m.head(m.backbone(v)) for v in views])
        teacher = torch.cat([m.teacher_head(m.teacher_backbone(v)) for v in views[:2]])
    center = m.center.clone()
    want = dino_loss(student, teacher, center, 0.1, 0.04, 2)       # epoch 1 of 0.02 -> 0.06 over 3 epochs
    out = m(views)
    torch.testing.assert_close(out["loss"], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.center, dino_center(teacher, center, 0.9), rtol=1e-5, atol=1e-7)
    assert float(out["teacher_temp"]) == pytest.approx(0.04)
    q = torch.softmax((teacher - center) / 0.04, dim=-1)
    assert float(out["teacher_entropy"]) == pytest.approx(float(-(q * q.log()).sum(-1).mean()), rel=1e-4)
    m.eval()
    before = m.center.clone()
    m(views)
    assert torch.equal(m.center, before)                          # evaluation leaves the centre alone


def test_last_layer_is_frozen_in_the_first_epochs_and_the_teacher_follows_dinos_momentum():
    m = _dino(freeze_last_layer=1, momentum_teacher=0.9)
    m.use_views(2, 2)
    m.on_epoch_start(0)
    m(_views(2))["loss"].backward()
    m.before_optimizer_step(0, 10)
    assert m.head.last_layer.weight_v.grad is None and m.head.last_layer.weight_g.grad is None
    assert m.head.mlp[0].weight.grad is not None
    m.on_epoch_start(1)
    m.zero_grad()
    m(_views(2))["loss"].backward()
    m.before_optimizer_step(5, 10)
    assert m.head.last_layer.weight_v.grad is not None
    teacher = [p.detach().clone() for p in m.teacher_head.parameters()]
    with torch.no_grad():
        for p in m.head.parameters():
            p.add_(1.0)
    m.on_train_step_end(3, 10)
    mom = cosine_value(3, 10, 0.9, 1.0)
    assert float(m.momentum) == pytest.approx(mom)
    for t0, t1, s in zip(teacher, m.teacher_head.parameters(), m.head.parameters()):
        torch.testing.assert_close(t1, mom * t0 + (1 - mom) * s.detach(), rtol=1e-6, atol=1e-6)


def test_teacher_has_no_stochastic_depth_and_starts_as_the_student():
    from simxir.methods import build_method
    from simxir.models import build_backbone

    torch.manual_seed(0)
    m = build_method("dino", build_backbone("vit-tiny-p8-32", drop_path=0.2), {"out_dim": 16, "hidden_dim": 16,
                                                                                "bottleneck_dim": 8})
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in m.backbone.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)
    assert all(getattr(b.drop_path, "drop_prob", 0.0) == 0.0 for b in m.teacher_backbone.blocks)
    for a, b in zip(m.backbone.state_dict().values(), m.teacher_backbone.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(4, 3, 32, 32)
    m.teacher_backbone.train()
    torch.testing.assert_close(m.teacher_backbone(x), m.teacher_backbone(x))   # deterministic in training


def test_views_the_methods_take():
    m = _dino()
    m.use_views(2, 8)
    m.use_views(1, 2)
    with pytest.raises(UserError, match="at least two views"):
        m.use_views(1, 0)
    from simxir.methods import build_method
    from simxir.models import build_backbone

    for name in ("moco", "simclr", "barlow_twins", "vicreg", "bridge"):
        with pytest.raises(UserError, match="takes no local crops"):
            build_method(name, build_backbone("convnet-small")).use_views(2, 2)
    with pytest.raises(UserError, match="global crops"):
        build_method("byol", build_backbone("convnet-small")).use_views(3, 0)
    with pytest.raises(UserError, match="raw-anchor"):
        build_method("simxir", build_backbone("convnet-small"), {"variant": "raw-anchor"}).use_views(2, 2)


# ---------------------------------------------------------------------------------------------
# DINO's checkpoint.pth layout, both ways (against DINO's own modules and restart_from_checkpoint:
# benchmarks/checkpoints/verify_dino_official.py)

def test_dino_checkpoint_round_trip_and_its_layout(tmp_path):
    import argparse

    from simxir.methods.dino import dino_checkpoint

    m = _dino()
    with torch.no_grad():
        for p in m.teacher_head.parameters():
            p.add_(0.5)
    m.center.fill_(0.25)
    ckpt = dino_checkpoint(m, 4)
    assert ckpt["epoch"] == 4 and torch.equal(ckpt["dino_loss"]["center"], m.center)
    assert all(k.startswith(("module.backbone.", "module.head.")) for k in ckpt["student"])
    assert all(k.startswith(("backbone.", "head.")) for k in ckpt["teacher"])      # no BN: no DDP around the teacher
    assert "head.last_layer.weight_g" in ckpt["teacher"] and "module.head.mlp.0.weight" in ckpt["student"]
    ckpt["args"] = argparse.Namespace(arch="toy")                                     # as main_dino.py saves it
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    back = _dino(init=str(tmp_path / "checkpoint.pth"))
    for a, b in zip(m.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(UserError, match="student head does not fit"):
        _dino(out_dim=64, init=str(tmp_path / "checkpoint.pth"))
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a DINO checkpoint.pth"):
        _dino(init=str(tmp_path / "other.pth"))


def test_a_run_writes_dinos_checkpoint_and_a_run_continues_from_it(tmp_path):
    from simxir.augment import MultiCropConfig, build_augment
    from simxir.data import load_dataset
    from simxir.models import build_backbone
    from simxir.train import train
    from simxir.train.assemble import build_config

    data = load_dataset("digits")
    over = ["epochs=1", "batch_size=256", "tensorboard=false", "monitor.eval_size=64", "probe.enabled=false",
            "method.out_dim=64", "method.hidden_dim=32", "method.bottleneck_dim=16", "multicrop.local_crops=2"]
    cfg = build_config("dino", None, over)
    aug = build_augment("auto", data.image_size, data.mean, data.std, multicrop=MultiCropConfig(local_crops=2))
    from simxir.methods import build_method

    torch.manual_seed(0)
    first = build_method("dino", build_backbone("convnet-small"), cfg.method)
    train(cfg, first, data, aug, tmp_path / "a")
    saved = torch.load(tmp_path / "a" / "dino_checkpoint.pth", weights_only=True)
    assert saved["epoch"] == 1 and set(saved) == {"student", "teacher", "epoch", "dino_loss"}
    assert all(k.startswith("module.") for k in saved["teacher"])                     # BN: DINO wraps it in DDP
    torch.manual_seed(1)
    init = str(tmp_path / "a" / "dino_checkpoint.pth")
    cont = build_method("dino", build_backbone("convnet-small"), {**cfg.method, "init": init})
    for a, b in zip(first.state_dict().values(), cont.state_dict().values()):
        assert torch.equal(a, b)                                                      # student, teacher, centre
    res = train(cfg, cont, data, aug, tmp_path / "b")
    assert res["encoder"] and not any(torch.equal(a, b) for a, b in zip(first.backbone.parameters(),
                                                                         cont.backbone.parameters()))
