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
