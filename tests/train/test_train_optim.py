"""LARS, parameter groups and the lr schedule against formulas written out here."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simxir.errors import UserError
from simxir.train.config import OptimConfig, ScheduleConfig
from simxir.train.optim import LARS, build_optimizer, split_decay
from simxir.train.schedule import apply_lr, lr_factor


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.Linear(4, 3, bias=False))


def _set_grads(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)


def test_bias_and_norm_params_are_excluded_from_decay():
    m = _model()
    decay, no_decay = split_decay(m, exclude_bias_norm=True)
    assert {id(p) for p in decay} == {id(m[0].weight), id(m[2].weight)}
    assert {id(p) for p in no_decay} == {id(m[0].bias), id(m[1].weight), id(m[1].bias)}
    decay_all, none = split_decay(m, exclude_bias_norm=False)
    assert len(decay_all) == 5 and none == []


def test_lars_two_steps_match_the_formula():
    """q = eta*|p| / (|g| + wd*|p| + eps); d = q*(g + wd*p); buf = mom*buf + d; p -= lr*buf.
    Excluded (1-d) params: plain momentum SGD, no wd, no adaptation."""
    torch.manual_seed(1)
    m = _model()
    lr, wd, mom, eta = 0.3, 1e-2, 0.9, 0.02
    opt = build_optimizer(OptimConfig(name="lars", weight_decay=wd, momentum=mom, eta=eta), m, lr)
    assert isinstance(opt, LARS)
    ref = {n: p.detach().clone() for n, p in m.named_parameters()}
    bufs: dict[str, torch.Tensor] = {}
    for step in range(2):
        _set_grads(m, seed=step)
        grads = {n: p.grad.clone() for n, p in m.named_parameters()}
        opt.step()
        for n, p0 in ref.items():
            g = grads[n]
            if p0.ndim > 1:
                q = eta * p0.norm() / (g.norm() + wd * p0.norm() + 1e-8)
                d = q * (g + wd * p0)
            else:
                d = g
            bufs[n] = d if n not in bufs else mom * bufs[n] + d
            ref[n] = p0 - lr * bufs[n]
        for n, p in m.named_parameters():
            torch.testing.assert_close(p.detach(), ref[n], rtol=1e-6, atol=1e-7, msg=n)


def test_lars_clip_caps_the_adapted_rate_at_one():
    p = nn.Parameter(torch.full((2, 2), 10.0))
    opt = LARS([p], lr=0.01, momentum=0.0, eta=1.0, clip_lars_lr=True)
    p.grad = torch.full((2, 2), 1e-3)          # q/lr would be huge: clipped to 1 -> plain SGD step
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((2, 2), 10.0 - 0.01 * 1e-3))


def test_sgd_groups_apply_weight_decay_only_to_weights():
    m = _model()
    opt = build_optimizer(OptimConfig(name="sgd", weight_decay=0.1, momentum=0.0), m, lr=1.0)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in m.named_parameters():
        expect = before[n] * (1 - 0.1) if p.ndim > 1 else before[n]
        torch.testing.assert_close(p.detach(), expect, msg=n)


def test_extra_group_keeps_its_own_lr_and_gets_no_lars():
    m, probe = _model(), nn.Linear(3, 2)
    opt = build_optimizer(OptimConfig(name="lars"), m, 0.5,
                          [{"name": "probe", "params": list(probe.parameters()), "lr": 0.1}])
    g = [g for g in opt.param_groups if g.get("name") == "probe"][0]
    assert g["lr"] == 0.1 and g["base_lr"] == 0.1 and g["lars"] is False and g["weight_decay"] == 0.0


def test_adamw_and_bad_betas():
    m = _model()
    assert isinstance(build_optimizer(OptimConfig(name="adamw"), m, 1e-3), torch.optim.AdamW)
    with pytest.raises(UserError, match="optim.betas"):
        build_optimizer(OptimConfig(name="adamw", betas=(0.9,)), m, 1e-3)


@pytest.mark.parametrize("final", [0.0, 0.1])
def test_warmup_then_cosine(final):
    cfg = ScheduleConfig(name="cosine", warmup_epochs=0, final_lr_ratio=final)
    total, warm = 100, 10
    for t in range(total):
        if t < warm:
            expect = (t + 1) / warm
        else:
            expect = final + (1 - final) * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))
        assert lr_factor(t, total, warm, cfg) == pytest.approx(expect, rel=1e-12)
    # shape: peak 1 at the end of warm-up, monotone decay afterwards, reaches final at the end
    assert lr_factor(warm - 1, total, warm, cfg) == 1.0 == lr_factor(warm, total, warm, cfg)
    vals = [lr_factor(t, total, warm, cfg) for t in range(warm, total + 1)]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert lr_factor(total, total, warm, cfg) == pytest.approx(final)


def test_constant_schedule_and_apply_lr():
    cfg = ScheduleConfig(name="constant", warmup_epochs=0)
    assert lr_factor(3, 10, 0, cfg) == 1.0
    m = _model()
    opt = build_optimizer(OptimConfig(name="sgd"), m, 0.4, [{"params": [nn.Parameter(torch.zeros(1))], "lr": 0.2}])
    apply_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2, 0.1]
