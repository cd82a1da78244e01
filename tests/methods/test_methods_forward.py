"""Every method on a small backbone: finite scalar loss, gradients reach the backbone and never
the momentum/target copies, the contract's outputs; method-specific switches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simxir.methods import METHODS, BridgeConfig, MoCoConfig, build_method
from simxir.methods.barlow_twins import standardize
from simxir.methods.bridge import bridge_loss
from simxir.methods.moco import infonce_loss
from simxir.methods.simclr import simclr_masks

SMALL = {
    "byol": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16},
    "simsiam": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16},
    "barlow_twins": {"proj_sizes": [16, 8]},
    "vicreg": {"proj_sizes": [16, 8]},
    "moco": {"proj_hidden": 16, "proj_dim": 8, "queue_size": 32},
    "simclr": {"proj_hidden": 16, "proj_dim": 8},
    "bridge": {"proj_sizes": [16, 8], "partitions": 2},
    "dino": {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8},
    "simxir": {},
}
MOMENTUM = {"byol": ("target_backbone", "target_projector"),
            "moco": ("momentum_backbone", "momentum_projector")}
FROZEN = {**MOMENTUM, "simxir": ("target",)}   # SimXIR's target is refreshed per round (tests/methods/test_simxir.py)


def test_small_configs_cover_every_method() -> None:
    assert set(SMALL) == set(METHODS)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_contract(name, convnet_small, views) -> None:
    m = build_method(name, convnet_small, SMALL[name])
    m.train()
    m.on_epoch_start(0)
    out = m(views)
    loss = out["loss"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    n = views[0].shape[0]
    width = m.backbone.feature_dim if name == "simxir" else 8   # SimXIR has no projector: z is the feature
    for key in ("z1", "z2"):
        assert out[key].shape == (n, width) and not out[key].requires_grad
    assert out["feats1"].shape == (n, m.backbone.feature_dim) and not out["feats1"].requires_grad
    for key, value in out.items():
        if key != "loss":
            assert not value.requires_grad, key
    loss.backward()
    grads = [p.grad for p in m.backbone.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    for attr in FROZEN.get(name, ()):
        for p in getattr(m, attr).parameters():
            assert p.grad is None and not p.requires_grad
    m.on_train_step_end(0, 10)
    m.eval()
    with torch.no_grad():
        z = m.project(views[0])
    assert z.shape == (n, width)


@pytest.mark.parametrize("name", sorted(MOMENTUM))
def test_momentum_copy_moves_toward_online_after_step(name, backbone, views) -> None:
    m = build_method(name, backbone, SMALL[name])
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(views)["loss"].backward()
    opt.step()
    online = dict(m.backbone.named_parameters())
    frozen = dict(getattr(m, MOMENTUM[name][0]).named_parameters())
    before = {k: (online[k] - frozen[k]).norm().item() for k in online}
    m.on_train_step_end(0, 100)
    after = {k: (online[k] - frozen[k]).norm().item() for k in online}
    moved = [k for k in online if before[k] > 0]
    assert moved
    for k in moved:
        assert after[k] == pytest.approx(m.tau * before[k], rel=1e-4, abs=1e-7)


def test_predictor_weights(backbone) -> None:
    assert build_method("simsiam", backbone, SMALL["simsiam"]).predictor_weight() is None
    b = build_method("bridge", small_backbone_copy(backbone), SMALL["bridge"])
    assert b.predictor_weight() is b.predictor.weight and b.predictor.weight.shape == (8, 8)
    assert b.predictor.bias is None


def small_backbone_copy(backbone: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(backbone)


# ---- MoCo queue --------------------------------------------------------------------------
def test_moco_queue_fifo_pointer_and_wraparound(backbone) -> None:
    m = build_method("moco", backbone, MoCoConfig(proj_hidden=16, proj_dim=4, queue_size=10))
    assert m.queue.shape == (2, 10, 4) and int(m.queue_ptr) == 0
    keys = [torch.full((2, 4, 4), float(i + 1)) for i in range(3)]
    m.enqueue(keys[0])
    assert int(m.queue_ptr) == 4 and torch.all(m.queue[:, :4] == 1)
    m.enqueue(keys[1])
    assert int(m.queue_ptr) == 8 and torch.all(m.queue[:, 4:8] == 2)
    old_8_9 = m.queue[:, 8:10].clone()
    m.enqueue(keys[2])  # wraps: slots 8, 9, 0, 1
    assert int(m.queue_ptr) == 2 and m.queue.shape == (2, 10, 4)
    assert torch.all(m.queue[:, 8:10] == 3) and torch.all(m.queue[:, 0:2] == 3)
    assert torch.all(m.queue[:, 2:4] == 1) and torch.all(m.queue[:, 4:8] == 2)
    assert not torch.equal(old_8_9, m.queue[:, 8:10])
    m.enqueue(torch.arange(2 * 12 * 4, dtype=torch.float32).reshape(2, 12, 4))  # larger than K
    assert int(m.queue_ptr) == 0
    torch.testing.assert_close(m.queue, torch.arange(2 * 12 * 4, dtype=torch.float32).reshape(2, 12, 4)[:, 2:])


def test_moco_reads_its_queue_pointer_from_the_device_once_and_again_after_a_load(backbone, monkeypatch) -> None:
    """The pointer lives on the host between steps (int(tensor) is a device sync on CUDA); a loaded
    checkpoint's pointer is read again."""
    m = build_method("moco", backbone, MoCoConfig(proj_hidden=16, proj_dim=4, queue_size=10))
    reads = []
    real = torch.Tensor.__int__

    def counting(self):  # noqa: ANN001, ANN202
        reads.append(1)
        return real(self)

    monkeypatch.setattr(torch.Tensor, "__int__", counting)
    for _ in range(3):
        m.enqueue(torch.ones(2, 3, 4))
    assert len(reads) == 1 and m._ptr == 9
    state = m.state_dict()
    state["queue_ptr"] = torch.tensor(4)
    m.load_state_dict(state)
    m.enqueue(torch.ones(2, 3, 4))
    assert len(reads) == 2 and m._ptr == 7
    monkeypatch.undo()
    assert int(m.queue_ptr) == 7


def test_moco_forward_uses_old_queue_then_enqueues_keys(backbone, views) -> None:
    m = build_method("moco", backbone, MoCoConfig(proj_hidden=16, proj_dim=4, queue_size=16))
    queue0 = m.queue.clone()
    v1, v2 = views
    with torch.no_grad():
        k1 = torch.nn.functional.normalize(m.momentum_projector(m.momentum_backbone(v1)), dim=-1)
        k2 = torch.nn.functional.normalize(m.momentum_projector(m.momentum_backbone(v2)), dim=-1)
    out = m([v1, v2])
    with torch.no_grad():
        q1 = m.projector(m.backbone(v1))
        q2 = m.projector(m.backbone(v2))
        ref = (infonce_loss(q1, k2, queue0[1], 0.2) + infonce_loss(q2, k1, queue0[0], 0.2)) / 2
    torch.testing.assert_close(out["loss"].detach(), ref, rtol=1e-5, atol=1e-6)
    n = v1.shape[0]
    assert int(m.queue_ptr) == n
    torch.testing.assert_close(m.queue[0, :n], k1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.queue[1, :n], k2, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.queue[:, n:], queue0[:, n:])
    m.eval()
    with torch.no_grad():
        m([v1, v2])
    assert int(m.queue_ptr) == n  # evaluation passes do not enqueue


# ---- SimCLR masks ------------------------------------------------------------------------
@pytest.mark.parametrize("n_local,n_global,offset", [(4, 4, 0), (3, 9, 3), (3, 9, 6)])
def test_simclr_positive_and_negative_counts(n_local, n_global, offset) -> None:
    pos, neg = simclr_masks(n_local, n_global, offset)
    assert pos.shape == (2 * n_local, 2 * n_global)
    assert torch.all(pos.sum(1) == 1)
    assert torch.all(neg.sum(1) == 2 * n_global - 2)
    assert not torch.any(pos & neg)
    for r in range(2 * n_local):
        view, i = divmod(r, n_local)
        self_col = view * n_global + offset + i
        other_col = (1 - view) * n_global + offset + i
        assert pos[r, other_col] and not neg[r, self_col] and not pos[r, self_col]


# ---- bridge switches ---------------------------------------------------------------------
def test_bridge_method_loss_is_bridge_loss_on_standardized_outputs(backbone, views) -> None:
    m = build_method("bridge", backbone, BridgeConfig(proj_sizes=[16, 8], partitions=2,
                                                      c_inv=3.0, c_cov=2.0))
    out = m(views)
    with torch.no_grad():
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
        ref = bridge_loss(standardize(z1), standardize(z2), m.predictor.weight, 3.0, 2.0, 2)
    torch.testing.assert_close(out["loss"].detach(), ref, rtol=1e-4, atol=1e-5)


def test_bridge_standardize_off_uses_raw_outputs(backbone, views) -> None:
    m = build_method("bridge", backbone, BridgeConfig(proj_sizes=[16, 8], standardize=False, c_inv=8.0, c_cov=8.0))
    assert isinstance(m.standardizer, nn.Identity)
    out = m(views)
    with torch.no_grad():
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
        ref = bridge_loss(z1, z2, m.predictor.weight, 8.0, 8.0, 1)
    torch.testing.assert_close(out["loss"].detach(), ref, rtol=1e-4, atol=1e-5)


def test_bridge_identity_predictor(backbone, views) -> None:
    m = build_method("bridge", backbone, BridgeConfig(proj_sizes=[16, 8], predictor="identity", c_inv=8.0, c_cov=8.0))
    assert m.predictor is None
    assert not any("predictor" in name for name, _ in m.named_parameters())
    torch.testing.assert_close(m.predictor_weight(), torch.eye(8))
    out = m(views)
    with torch.no_grad():
        z1, z2 = (m.projector(m.backbone(v)) for v in views)
        ref = bridge_loss(standardize(z1), standardize(z2), torch.eye(8), 8.0, 8.0, 1)
    torch.testing.assert_close(out["loss"].detach(), ref, rtol=1e-4, atol=1e-5)


def test_bridge_stop_gradient_switch_changes_gradients(backbone, views) -> None:
    import copy

    a = build_method("bridge", backbone, BridgeConfig(proj_sizes=[16, 8]))
    b = copy.deepcopy(a)
    b.cfg = BridgeConfig(proj_sizes=[16, 8], stop_gradient=True)
    la, lb = a(views)["loss"], b(views)["loss"]
    torch.testing.assert_close(la, lb)  # same value ...
    ga = torch.autograd.grad(la, list(a.projector.parameters()))
    gb = torch.autograd.grad(lb, list(b.projector.parameters()))
    assert any(not torch.allclose(x, y) for x, y in zip(ga, gb))  # ... different gradients


def test_bridge_rejects_bad_partitions(backbone) -> None:
    from simxir.errors import UserError

    with pytest.raises(UserError, match="partitions"):
        build_method("bridge", backbone, BridgeConfig(proj_sizes=[8], partitions=0))
    m = build_method("bridge", small_backbone_copy(backbone), BridgeConfig(proj_sizes=[8], partitions=64))
    with pytest.raises(UserError, match="partitions"):
        m([torch.randn(4, 3, 16, 16), torch.randn(4, 3, 16, 16)])


@pytest.mark.parametrize("name,extra", [(n, {}) for n in sorted(SMALL) if n != "simxir"]   # SimXIR: no projector
                         + [("bridge", {"standardize": False})])
def test_scale_sensitive_says_whether_shrinking_the_projector_output_changes_the_loss(
        name, extra, backbone, views) -> None:
    import copy

    m = build_method(name, backbone, {**SMALL[name], **extra})
    shrunk = copy.deepcopy(m)     # deep copies: MoCo's forward enqueues keys
    # outputs at scale 100 vs 50: far above the normalization eps, which dominates at init scale
    def proj(method):  # noqa: ANN001, ANN202 - DINO's projector is its head's MLP (l2-normalised after)
        return method.head.mlp if name == "dino" else method.projector

    proj(m).register_forward_hook(lambda _mod, _inp, out: 100.0 * out)
    proj(shrunk).register_forward_hook(lambda _mod, _inp, out: 50.0 * out)
    torch.manual_seed(0)
    base = float(m(views)["loss"].detach())
    torch.manual_seed(0)
    half = float(shrunk(views)["loss"].detach())
    changed = abs(half - base) > 1e-3 * abs(base)
    assert changed == m.scale_sensitive, (name, extra, base, half)
