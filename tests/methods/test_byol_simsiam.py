"""BYOL and SimSiam losses against independent float64 formulas; EMA target behaviour."""

from __future__ import annotations

import math

import pytest
import torch

from simxir.methods import BYOLConfig, build_method
from simxir.methods.byol import byol_loss
from simxir.methods.simsiam import simsiam_loss


def _ref_byol(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    total = p.new_zeros(())
    for i in range(p.shape[0]):
        pn = p[i] / torch.sqrt((p[i] ** 2).sum())
        zn = z[i] / torch.sqrt((z[i] ** 2).sum())
        total = total + ((pn - zn) ** 2).sum()
    return total / p.shape[0]


def _ref_neg_cos(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    total = p.new_zeros(())
    for i in range(p.shape[0]):
        total = total - (p[i] * z[i]).sum() / (p[i].norm() * z[i].norm())
    return total / p.shape[0]


@pytest.mark.parametrize("loss_fn,ref", [(byol_loss, _ref_byol), (simsiam_loss, _ref_neg_cos)])
def test_loss_value_and_gradients(loss_fn, ref) -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    ours = loss_fn(p, z)
    theirs = ref(p, z)
    torch.testing.assert_close(ours, theirs)
    g_ours = torch.autograd.grad(ours, (p, z))
    g_ref = torch.autograd.grad(theirs, (p, z))
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)


def test_byol_loss_range_and_relation_to_cosine() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.randn(10, 4, generator=g, dtype=torch.float64)
    assert byol_loss(p, 3 * p).item() == pytest.approx(0.0, abs=1e-12)
    assert byol_loss(p, -p).item() == pytest.approx(4.0)
    z = torch.randn(10, 4, generator=g, dtype=torch.float64)
    assert byol_loss(p, z).item() == pytest.approx(2 + 2 * simsiam_loss(p, z).item())


def test_byol_ema_follows_cosine_schedule(tiny) -> None:
    torch.manual_seed(0)
    m = build_method("byol", tiny(), BYOLConfig(tau_base=0.9))
    with torch.no_grad():
        for p in m.backbone.parameters():
            p.add_(1.0)
    old_t = [p.detach().clone() for p in m.target_backbone.parameters()]
    step, total = 3, 10
    m.on_train_step_end(step, total)
    tau = 1 - (1 - 0.9) * (math.cos(math.pi * step / total) + 1) / 2
    assert m.tau == pytest.approx(tau)
    for t0, o, t in zip(old_t, m.backbone.parameters(), m.target_backbone.parameters()):
        torch.testing.assert_close(t, tau * t0 + (1 - tau) * o.detach())


def test_byol_target_starts_equal_and_gets_no_gradient(tiny, views) -> None:
    torch.manual_seed(0)
    m = build_method("byol", tiny())
    for a, b in zip(m.backbone.parameters(), m.target_backbone.parameters()):
        assert torch.equal(a, b)
    m(views)["loss"].backward()
    assert all(p.grad is None for p in m.target_backbone.parameters())
    assert all(p.grad is None for p in m.target_projector.parameters())


def test_byol_linear_predictor_is_bias_free_square(tiny) -> None:
    m = build_method("byol", tiny(), BYOLConfig(predictor="linear"))
    w = m.predictor_weight()
    assert w is not None and w.shape == (128, 128) and m.predictor.bias is None
    assert build_method("byol", tiny()).predictor_weight() is None


def test_simsiam_stop_gradient_matches_explicit_formula(tiny, views) -> None:
    """Gradients of the method's loss equal those of D(p1, sg z2)/2 + D(p2, sg z1)/2 written out."""
    torch.manual_seed(0)
    m = build_method("simsiam", tiny())
    params = list(m.projector.parameters()) + list(m.predictor.parameters())
    g_ours = torch.autograd.grad(m(views)["loss"], params)

    def ref(stop: bool) -> torch.Tensor:
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
        p1, p2 = m.predictor(z1), m.predictor(z2)
        t1, t2 = (z1.detach(), z2.detach()) if stop else (z1, z2)
        cos = torch.nn.functional.cosine_similarity
        return -(cos(p1, t2, dim=-1).mean() + cos(p2, t1, dim=-1).mean()) / 2

    g_ref = torch.autograd.grad(ref(True), params)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    g_nostop = torch.autograd.grad(ref(False), params)
    assert any(not torch.allclose(a, b) for a, b in zip(g_ours, g_nostop))


def test_byol_proj_bn_puts_batchnorm_in_the_projector_hidden_layer(backbone) -> None:
    from torch import nn as _nn

    from simxir.methods import build_method

    plain = build_method("byol", backbone, {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16,
                                            "proj_bn": False})   # SimXIR appendix C.2's projector
    with_bn = build_method("byol", backbone, {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16})
    # the default is the BYOL paper's projector, with BN
    assert not any(isinstance(m, _nn.BatchNorm1d) for m in plain.projector)
    kinds = [type(m) for m in with_bn.projector]
    assert kinds == [_nn.Linear, _nn.BatchNorm1d, _nn.ReLU, _nn.Linear]
    assert [type(m) for m in with_bn.target_projector] == kinds    # the EMA target mirrors it
