"""Each loss against an independent float64 implementation written from the paper's formula
(loops and explicit sums): values and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from simxir.errors import UserError
from simxir.methods.barlow_twins import barlow_twins_loss
from simxir.methods.bridge import bridge_loss, bridge_terms
from simxir.methods.moco import infonce_loss
from simxir.methods.simclr import nt_xent_loss
from simxir.methods.vicreg import vicreg_loss, vicreg_terms


def _rand(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()


def _check(ours: torch.Tensor, ref: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> None:
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
    def grads(y: torch.Tensor) -> list[torch.Tensor]:
        gs = torch.autograd.grad(y, inputs, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, gs)]

    for a, b in zip(grads(ours), grads(ref)):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


# ---- Barlow Twins ------------------------------------------------------------------------
def _ref_barlow(z1, z2, lambd, scale, eps=1e-5):
    n, d = z1.shape

    def std(z):
        cols = []
        for j in range(d):
            m = sum(z[b, j] for b in range(n)) / n
            v = sum((z[b, j] - m) ** 2 for b in range(n)) / n
            cols.append(torch.stack([(z[b, j] - m) / torch.sqrt(v + eps) for b in range(n)]))
        return cols  # cols[j][b]

    a, c = std(z1), std(z2)
    total = z1.new_zeros(())
    for i in range(d):
        for j in range(d):
            cij = sum(a[i][b] * c[j][b] for b in range(n)) / n
            total = total + ((1 - cij) ** 2 if i == j else lambd * cij ** 2)
    return scale * total


def test_barlow_twins() -> None:
    z1, z2 = _rand(7, 4, seed=0), _rand(7, 4, seed=1)
    _check(barlow_twins_loss(z1, z2, 0.3, 0.5), _ref_barlow(z1, z2, 0.3, 0.5), (z1, z2))


def test_barlow_twins_perfect_views_score_only_off_diagonal() -> None:
    z = _rand(50, 3, seed=2).detach()
    # identical views: C is the correlation matrix, diagonal 1 (up to eps)
    assert barlow_twins_loss(z, z, lambd=0.0).item() == pytest.approx(0.0, abs=1e-5)


# ---- VICReg ------------------------------------------------------------------------------
def _ref_vicreg(z1, z2, lam, mu, nu, eps=1e-4):
    n, d = z1.shape
    inv = sum((z1[b, j] - z2[b, j]) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def mean(z, j):
        return sum(z[b, j] for b in range(n)) / n

    def cov(z, i, j):
        mi, mj = mean(z, i), mean(z, j)
        return sum((z[b, i] - mi) * (z[b, j] - mj) for b in range(n)) / (n - 1)

    var = z1.new_zeros(())
    covt = z1.new_zeros(())
    for z in (z1, z2):
        hinge = sum(torch.clamp(1 - torch.sqrt(cov(z, j, j) + eps), min=0) for j in range(d)) / d
        var = var + hinge / 2  # the official code halves the sum over the two views
        covt = covt + sum(cov(z, i, j) ** 2 for i in range(d) for j in range(d) if i != j) / d
    return lam * inv + mu * var + nu * covt


def test_vicreg() -> None:
    z1 = (0.4 * _rand(9, 4, seed=3)).detach().requires_grad_()  # std < 1: hinge active
    z2 = _rand(9, 4, seed=4)
    _check(vicreg_loss(z1, z2, 25, 25, 1), _ref_vicreg(z1, z2, 25, 25, 1), (z1, z2))
    _check(vicreg_loss(z1, z2, 1.5, 2.0, 3.0), _ref_vicreg(z1, z2, 1.5, 2.0, 3.0), (z1, z2))


def test_vicreg_variance_term_is_halved_and_covariance_is_not() -> None:
    z = torch.zeros(6, 5, dtype=torch.float64)
    inv, var, cov = vicreg_terms(z, z)
    assert inv.item() == 0 and cov.item() == 0
    assert var.item() == pytest.approx(1 - math.sqrt(1e-4))  # mean of two views, not the sum
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    _, _, c_one = vicreg_terms(x, torch.zeros_like(x))
    _, _, c_two = vicreg_terms(x, x)
    assert c_two.item() == pytest.approx(2 * c_one.item())


# ---- SimCLR NT-Xent ----------------------------------------------------------------------
def _ref_nt_xent(z1, z2, t):
    z = torch.cat([z1, z2])
    n2 = z.shape[0]
    n = n2 // 2
    zn = [z[a] / torch.sqrt((z[a] ** 2).sum()) for a in range(n2)]
    total = z.new_zeros(())
    for a in range(n2):
        pos = (a + n) % n2
        num = torch.exp((zn[a] * zn[pos]).sum() / t)
        den = sum(torch.exp((zn[a] * zn[k]).sum() / t) for k in range(n2) if k != a)
        total = total - torch.log(num / den)
    return total / n2


def test_nt_xent() -> None:
    z1, z2 = _rand(5, 3, seed=5), _rand(5, 3, seed=6)
    _check(nt_xent_loss(z1, z2, 0.2), _ref_nt_xent(z1, z2, 0.2), (z1, z2))


def test_nt_xent_local_shards_average_to_full_batch() -> None:
    """Two simulated processes (offsets 0 and n) against the gathered batch: mean = full loss."""
    z1, z2 = _rand(6, 4, seed=7), _rand(6, 4, seed=8)
    full = nt_xent_loss(z1, z2, 0.5)
    shards = [nt_xent_loss(z1[s:s + 3], z2[s:s + 3], 0.5, z1, z2, offset=s) for s in (0, 3)]
    _check((shards[0] + shards[1]) / 2, full, (z1, z2))


# ---- MoCo InfoNCE ------------------------------------------------------------------------
def _ref_infonce(q, k, queue, t):
    def unit(v):
        return v / torch.sqrt((v ** 2).sum())

    total = q.new_zeros(())
    for i in range(q.shape[0]):
        qi = unit(q[i])
        pos = torch.exp((qi * unit(k[i])).sum() / t)
        neg = sum(torch.exp((qi * unit(queue[j])).sum() / t) for j in range(queue.shape[0]))
        total = total - torch.log(pos / (pos + neg))
    return total / q.shape[0]


def test_infonce() -> None:
    q, k, queue = _rand(4, 3, seed=9), _rand(4, 3, seed=10), _rand(6, 3, seed=11)
    _check(infonce_loss(q, k, queue, 0.2), _ref_infonce(q, k, queue, 0.2), (q, k, queue))


# ---- bridge ------------------------------------------------------------------------------
def _ref_bridge_one_way(z1, z2, w, k, per_sample=False):
    n, d = z1.shape
    inv = z1.new_zeros(())
    for b in range(n):
        for i in range(d):
            pred = sum(w[i, j] * z1[b, j] for j in range(d))
            inv = inv + (pred - z2[b, i]) ** 2
    inv = inv / n if per_sample else inv / (n * d)
    size = n // k
    wtw = sum(torch.outer(w[r], w[r]) for r in range(d))  # W^T W = sum_r w_r w_r^T
    cov = z1.new_zeros(())
    for p in range(k):
        rows = range(p * size, (p + 1) * size)
        c = sum(torch.outer(z1[b], z1[b]) for b in rows) / size
        m = wtw - w @ c @ w.T
        cov = cov + (m ** 2).sum() / d  # ||.||_F^2 / d of eq. 19
    return inv, cov


@pytest.mark.parametrize("k", [1, 3])
def test_bridge_terms(k) -> None:
    z1, z2, w = _rand(6, 3, seed=12), _rand(6, 3, seed=13), _rand(3, 3, seed=14)
    ours = bridge_terms(z1, z2, w, partitions=k)
    ref = _ref_bridge_one_way(z1, z2, w, k)
    for a, b in zip(ours, ref):
        _check(a, b, (z1, z2, w))


def test_bridge_inv_per_sample_is_eq17_frobenius_norm() -> None:
    z1, z2, w = _rand(6, 3, seed=15), _rand(6, 3, seed=16), _rand(3, 3, seed=17)
    inv, _ = bridge_terms(z1, z2, w, inv_per_sample=True)
    f1, f2 = z1.T / math.sqrt(6), z2.T / math.sqrt(6)  # the paper's F = [f_1..f_n]/sqrt(n)
    _check(inv, ((w @ f1 - f2) ** 2).sum(), (z1, z2, w))
    inv_mean, _ = bridge_terms(z1, z2, w)
    assert inv.item() == pytest.approx(3 * inv_mean.item())


def test_bridge_loss_symmetrized_average() -> None:
    z1, z2, w = _rand(6, 3, seed=18), _rand(6, 3, seed=19), _rand(3, 3, seed=20)
    i12, c12 = _ref_bridge_one_way(z1, z2, w, 2)
    i21, c21 = _ref_bridge_one_way(z2, z1, w, 2)
    ref = (2.0 * (i12 + i21) + 5.0 * (c12 + c21)) / 2
    _check(bridge_loss(z1, z2, w, c_inv=2.0, c_cov=5.0, partitions=2), ref, (z1, z2, w))
    # directions=sum: the official code's total, the two directions added
    _check(bridge_loss(z1, z2, w, c_inv=2.0, c_cov=5.0, partitions=2, directions="sum"), 2 * ref, (z1, z2, w))
    with pytest.raises(UserError, match="directions"):
        bridge_loss(z1, z2, w, directions="both")


def test_bridge_method_passes_its_directions() -> None:
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415

    torch.manual_seed(0)
    x1, x2 = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16)
    losses = {}
    for d in ("mean", "sum"):
        torch.manual_seed(1)
        m = build_method("bridge", build_backbone("convnet-small"), {"directions": d, "proj_sizes": [16, 8]})
        losses[d] = m([x1, x2])["loss"]
    torch.testing.assert_close(losses["sum"], 2 * losses["mean"])


def test_bridge_stop_gradient_only_cuts_the_target_side() -> None:
    z1, z2, w = _rand(6, 3, seed=21), _rand(6, 3, seed=22), _rand(3, 3, seed=23)
    # invariance only: with stop-gradient, each direction's target is a constant
    ours = bridge_loss(z1, z2, w, c_inv=1.0, c_cov=0.0, stop_gradient=True)
    i12, _ = _ref_bridge_one_way(z1, z2.detach(), w, 1)
    i21, _ = _ref_bridge_one_way(z2, z1.detach(), w, 1)
    _check(ours, (i12 + i21) / 2, (z1, z2, w))
    free = bridge_loss(z1, z2, w, c_inv=1.0, c_cov=0.0, stop_gradient=False)
    g_sg = torch.autograd.grad(ours, (z1,))[0]
    g_free = torch.autograd.grad(free, (z1,))[0]
    assert not torch.allclose(g_sg, g_free)
    # covariance only: the switch changes nothing
    a = bridge_loss(z1, z2, w, c_inv=0.0, c_cov=1.0, stop_gradient=True)
    b = bridge_loss(z1, z2, w, c_inv=0.0, c_cov=1.0, stop_gradient=False)
    for x, y in zip(torch.autograd.grad(a, (z1, z2, w)), torch.autograd.grad(b, (z1, z2, w))):
        torch.testing.assert_close(x, y)


def test_bridge_partitions_sum_of_blocks() -> None:
    z1, z2, w = _rand(8, 3, seed=24), _rand(8, 3, seed=25), _rand(3, 3, seed=26)
    _, c2 = bridge_terms(z1, z2, w, partitions=2)
    _, a = bridge_terms(z1[:4], z2[:4], w, partitions=1)
    _, b = bridge_terms(z1[4:], z2[4:], w, partitions=1)
    torch.testing.assert_close(c2, a + b)
    _, c1 = bridge_terms(z1, z2, w, partitions=1)
    assert not torch.allclose(c1, c2)


def test_bridge_stop_gradient_with_identity_predictor_only_halves_the_invariance_gradient():
    """With W_p = I the symmetric invariance term sends z1 the same pull from both directions, so
    detaching the targets halves it and leaves the covariance gradient alone: with I-PRED,
    stop-gradient is a reweighting (c_inv -> c_inv / 2), not a different objective."""
    from simxir.methods.bridge import bridge_loss

    torch.manual_seed(0)
    z1 = torch.randn(24, 6, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(24, 6, dtype=torch.float64, requires_grad=True)
    eye = torch.eye(6, dtype=torch.float64)

    def grads(**kw):
        g = torch.autograd.grad(bridge_loss(z1, z2, eye, **kw), (z1, z2))
        return torch.cat([t.flatten() for t in g])

    sg = grads(c_inv=3.0, c_cov=2.0, stop_gradient=True)
    half_inv = grads(c_inv=1.5, c_cov=2.0, stop_gradient=False)
    torch.testing.assert_close(sg, half_inv)
    # not so with a learned (non-identity) predictor
    w = torch.randn(6, 6, dtype=torch.float64)
    g_sg = torch.autograd.grad(bridge_loss(z1, z2, w, 3.0, 0.0, stop_gradient=True), z1)[0]
    g_half = torch.autograd.grad(bridge_loss(z1, z2, w, 1.5, 0.0, stop_gradient=False), z1)[0]
    assert not torch.allclose(g_sg, g_half)
