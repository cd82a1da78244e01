"""Shared pieces: EMA schedule and update, MLP builder, registry and config errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from simxir.errors import UserError
from simxir.methods import CONFIGS, METHODS, build_method
from simxir.methods.base import cosine_tau, ema_update_, make_target
from simxir.methods.heads import mlp


def test_cosine_tau_matches_formula() -> None:
    base, total = 0.99, 37
    for k in range(total + 1):
        expected = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
        assert cosine_tau(base, k, total) == pytest.approx(expected, abs=1e-15)
    assert cosine_tau(base, 0, total) == pytest.approx(base)
    assert cosine_tau(base, total, total) == pytest.approx(1.0)
    assert cosine_tau(0.9, 10, 20) == pytest.approx(0.95)


def test_ema_update_matches_formula_and_leaves_online_alone() -> None:
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    target = make_target(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    before_t = [p.detach().clone().double() for p in target.parameters()]
    before_o = [p.detach().clone() for p in online.parameters()]
    tau = 0.7
    ema_update_(target, online, tau)
    for t_old, o, t_new in zip(before_t, online.parameters(), target.parameters()):
        expected = tau * t_old + (1 - tau) * o.detach().double()
        torch.testing.assert_close(t_new.double(), expected, rtol=1e-6, atol=1e-6)
    for o_old, o in zip(before_o, online.parameters()):
        assert torch.equal(o_old, o)
    assert all(not p.requires_grad for p in target.parameters())


def test_mlp_layout() -> None:
    m = mlp([10, 7, 5], hidden_bn=True, last_bn=True, last_bn_affine=False)
    kinds = [type(x).__name__ for x in m]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert m[0].bias is None and m[3].bias is None and not m[4].affine
    m = mlp([10, 7, 5], hidden_bn=False)
    assert [type(x).__name__ for x in m] == ["Linear", "ReLU", "Linear"]
    assert m[0].bias is not None and m[2].bias is not None
    m = mlp([10, 7, 7, 5], bias=False)
    assert all(x.bias is None for x in m if isinstance(x, nn.Linear))
    with pytest.raises(ValueError):
        mlp([10])


def test_registry_and_configs() -> None:
    assert set(METHODS) == set(CONFIGS)
    for name, cls in METHODS.items():
        assert cls.name == name and CONFIGS[name] is cls.config_cls


def test_build_method_errors(tiny) -> None:
    with pytest.raises(UserError, match="expected one of"):
        build_method("nope", tiny())
    with pytest.raises(UserError, match="unknown key"):
        build_method("byol", tiny(), {"not_a_field": 1})
    with pytest.raises(UserError, match="expected BYOLConfig"):
        build_method("byol", tiny(), CONFIGS["simsiam"]())
    with pytest.raises(UserError, match="feature_dim"):
        build_method("byol", nn.Linear(3, 3))


def test_build_method_from_mapping_uses_the_values(tiny) -> None:
    m = build_method("byol", tiny(), {"proj_dim": 16, "predictor": "linear"})
    assert m.predictor_weight() is not None and m.predictor_weight().shape == (16, 16)
