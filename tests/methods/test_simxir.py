"""SimXIR (Algorithm 1): the loss against its formula, frozen targets and rounds, BN modes, the
raw-anchor views, resume on the engine, and a synthetic problem where the contraction is guaranteed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from train_toys import Killed, kill_after

from simxir.errors import UserError
from simxir.methods import SimXIR, SimXIRConfig, simxir_loss


def _loop_loss(f: torch.Tensor, g: torch.Tensor, kind: str) -> float:
    """mean_i ||f_i - g_i||^2 written out sample by sample, in float64."""
    total = 0.0
    for fi, gi in zip(f.double().tolist(), g.double().tolist()):
        if kind == "cosine":
            nf, ng = math.sqrt(sum(v * v for v in fi)), math.sqrt(sum(v * v for v in gi))
            fi, gi = [v / nf for v in fi], [v / ng for v in gi]
        total += sum((a - b) ** 2 for a, b in zip(fi, gi))
    return total / len(f)


@pytest.mark.parametrize("kind", ["l2", "cosine"])
def test_loss_matches_formula_and_target_gets_no_gradient(kind):
    f = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(7, 5, dtype=torch.float64, requires_grad=True)
    loss = simxir_loss(f, g, kind)
    assert loss.item() == pytest.approx(_loop_loss(f.detach(), g.detach(), kind), rel=1e-12)
    loss.backward()
    assert g.grad is None
    if kind == "l2":  # d/df mean_i ||f_i - g_i||^2 = 2 (f - g) / n
        torch.testing.assert_close(f.grad, 2 * (f - g).detach() / 7)
    else:  # the spherical loss is 2 - 2 cos: check the value identity
        cos = torch.nn.functional.cosine_similarity(f.detach(), g.detach(), dim=1)
        assert loss.item() == pytest.approx((2 - 2 * cos).mean().item(), rel=1e-12)


def test_unknown_loss_kind_is_an_error():
    with pytest.raises(ValueError, match="expected 'l2' or 'cosine'"):
        simxir_loss(torch.zeros(2, 2), torch.zeros(2, 2), "huber")


class BNEncoder(nn.Module):
    """Linear -> BatchNorm: small, with running statistics to check the BN modes."""

    def __init__(self, d_in: int = 6, d: int = 4):
        super().__init__()
        self.feature_dim = d
        self.arch = "toy"
        self.lin = nn.Linear(d_in, d)
        self.bn = nn.BatchNorm1d(d)

    def forward(self, x):
        return self.bn(self.lin(x.flatten(1)))


def _state(m: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _sgd_steps(method: SimXIR, n_steps: int, total: int, start: int = 0, lr: float = 0.1) -> None:
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr)
    for step in range(start, start + n_steps):
        x = torch.randn(16, 6)
        out = method([x + 0.1 * torch.randn_like(x), x + 0.1 * torch.randn_like(x)])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_train_step_end(step, total)


def test_target_is_frozen_inside_a_round_and_refreshed_at_its_end():
    method = SimXIR(BNEncoder(), SimXIRConfig(epochs_per_round=2))
    assert all(not p.requires_grad for p in method.target.parameters())
    start = _state(method.backbone)
    for k, v in _state(method.target).items():
        torch.testing.assert_close(v, start[k])
    method.train()
    method.on_epoch_start(0)
    _sgd_steps(method, 3, 100)
    method.on_epoch_start(1)           # still round 1: target untouched
    _sgd_steps(method, 3, 100, start=3)
    target_now = _state(method.target)
    for k in ("lin.weight", "lin.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
        torch.testing.assert_close(target_now[k], start[k], msg=k)
    assert not torch.equal(_state(method.backbone)["lin.weight"], start["lin.weight"])
    online = _state(method.backbone)
    method.on_epoch_start(2)           # round 2 begins: the online encoder becomes the target
    for k, v in _state(method.target).items():
        if not k.endswith("num_batches_tracked"):
            torch.testing.assert_close(v, online[k], msg=k)
    assert method.rounds_done == 1


def test_rounds_by_steps():
    method = SimXIR(BNEncoder(), SimXIRConfig(steps_per_round=2))
    method.train()
    _sgd_steps(method, 1, 6)
    assert method.rounds_done == 0
    _sgd_steps(method, 1, 6, start=1)
    assert method.rounds_done == 1
    torch.testing.assert_close(method.target.lin.weight, method.backbone.lin.weight)
    _sgd_steps(method, 4, 6, start=2)  # refreshes after steps 4 and 6, but not after the last step
    assert method.rounds_done == 2


def test_batch_norm_modes_of_the_target():
    x1, x2 = torch.randn(32, 6) * 3 + 1, torch.randn(32, 6) * 3 + 1
    for mode in ("batch", "running"):
        torch.manual_seed(0)
        method = SimXIR(BNEncoder(), SimXIRConfig(target_bn=mode))
        method.train()
        assert method.target.training is (mode == "batch")
        before = _state(method.target)
        out = method([x1, x2])
        with torch.no_grad():
            t = method.target.lin(x2)
            if mode == "batch":   # batch statistics (biased variance), as BN computes in training
                expect = (t - t.mean(0)) / torch.sqrt(t.var(0, unbiased=False) + 1e-5)
            else:                 # the round-start running statistics (fresh BN: mean 0, var 1)
                expect = t / math.sqrt(1 + 1e-5)
        torch.testing.assert_close(out["z2"], expect, rtol=1e-4, atol=1e-5)
        after = _state(method.target)
        torch.testing.assert_close(after["bn.running_mean"], before["bn.running_mean"])
        torch.testing.assert_close(after["bn.running_var"], before["bn.running_var"])


def test_symmetric_loss_is_the_mean_of_both_directions():
    torch.manual_seed(0)
    method = SimXIR(BNEncoder(), SimXIRConfig(symmetric=True, target_bn="running"))
    method.eval()
    a, b = torch.randn(8, 6), torch.randn(8, 6)
    with torch.no_grad():
        expect = 0.5 * (_loop_loss(method.backbone(a), method.target(b), "l2")
                        + _loop_loss(method.backbone(b), method.target(a), "l2"))
        assert method([a, b])["loss"].item() == pytest.approx(expect, rel=1e-5)


def test_bad_option_combinations():
    with pytest.raises(UserError, match="raw-anchor"):
        SimXIR(BNEncoder(), SimXIRConfig(variant="raw-anchor", symmetric=True))
    with pytest.raises(UserError, match=">= 0"):
        SimXIR(BNEncoder(), SimXIRConfig(steps_per_round=-1))


def test_raw_anchor_views_are_the_clean_image_and_one_augmented_view(convnet_small):
    from simxir.augment import build_augment
    from simxir.train.config import TrainConfig
    from simxir.train.engine import method_views

    aug = build_augment("byol-imagenet", 16, (0.5,) * 3, (0.25,) * 3)
    views = method_views(SimXIR(convnet_small, SimXIRConfig(variant="raw-anchor")), aug, TrainConfig())
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(3)
    v1, v2 = views.views(x)
    torch.testing.assert_close(v1, aug.eval(x))
    torch.manual_seed(3)
    torch.testing.assert_close(v2, aug.view(x, aug.specs[1]))   # the recipe's second view (BYOL's differs)


# ---------------------------------------------------------------------------------------------
# the guaranteed effect: SimXIR contracts classes relative to their separation


def _ratio(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean within-class pairwise distance / mean distance between the two class means."""
    within = []
    for c in (0, 1):
        f = features[labels == c]
        within.append(torch.cdist(f, f).sum() / (len(f) * (len(f) - 1)))
    between = (features[labels == 0].mean(0) - features[labels == 1].mean(0)).norm()
    return float(torch.stack(within).mean() / between)


def test_finetuning_contracts_classes_on_a_synthetic_problem():
    """Two Gaussian classes at +-3 e_1 (spread 0.3), augmentation = Gaussian noise (sigma 0.5), a
    linear encoder. The expected loss E||W a(x) - W0 a'(x)||^2 is minimised by the ridge-like
    W0 S (S + sigma^2 I)^-1 with S = E[x x^T]: low-variance (within-class) directions shrink more
    than the class-separating one, so the within/between ratio must fall, round after round."""
    g = torch.Generator().manual_seed(0)
    d, n = 8, 200
    labels = torch.arange(n) % 2
    centers = torch.zeros(2, d)
    centers[0, 0], centers[1, 0] = 3.0, -3.0
    x = centers[labels] + 0.3 * torch.randn(n, d, generator=g)

    class LinearEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.feature_dim, self.arch = 16, "linear"
            self.lin = nn.Linear(d, 16, bias=False)

        def forward(self, inp):
            return self.lin(inp)

    torch.manual_seed(0)
    method = SimXIR(LinearEncoder(), SimXIRConfig(steps_per_round=100))
    with torch.no_grad():
        r0 = _ratio(method.backbone(x), labels)
    opt = torch.optim.SGD(method.backbone.parameters(), lr=0.02)
    total = 400
    for step in range(total):
        out = method([x + 0.5 * torch.randn(n, d), x + 0.5 * torch.randn(n, d)])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        method.on_train_step_end(step, total)
    with torch.no_grad():
        r1 = _ratio(method.backbone(x), labels)
    assert method.rounds_done == 3
    assert r1 < 0.8 * r0, (r0, r1)


# ---------------------------------------------------------------------------------------------
# on the engine: resume keeps the round structure (the target lives in the checkpoint)


def test_resume_across_a_round_boundary_reproduces_the_run(tmp_path):
    from simxir.augment import build_augment
    from simxir.data import load_dataset, subset
    from simxir.models import build_backbone
    from simxir.train import TrainConfig, train
    from simxir.train.config import MonitorConfig, OptimConfig, ScheduleConfig

    ds = subset(load_dataset("digits"), 128, 32, seed=0)
    aug = build_augment("tiny", ds.image_size, ds.mean, ds.std)
    cfg = TrainConfig(epochs=3, batch_size=32, precision="fp32", channels_last=False, device="cpu",
                      log_every=1, tensorboard=False,
                      optim=OptimConfig(name="sgd", lr=0.05, scale_lr=False, weight_decay=1e-6),
                      schedule=ScheduleConfig(name="constant"), monitor=MonitorConfig(eval_size=32))
    mcfg = SimXIRConfig(epochs_per_round=1)

    def method(seed: int) -> SimXIR:
        torch.manual_seed(seed)
        return SimXIR(build_backbone("convnet-small"), mcfg)

    torch.manual_seed(0)
    init = build_backbone("convnet-small").state_dict()

    def fresh(seed: int) -> SimXIR:
        m = method(seed)
        m.backbone.load_state_dict(init)
        m.target.load_state_dict(init)
        return m

    full = train(cfg, fresh(0), ds, aug, tmp_path / "full")

    with pytest.raises(Killed):
        train(cfg, fresh(0), ds, aug, tmp_path / "cut", callbacks=[kill_after(2)])
    resumed = train(cfg, method(7), ds, aug, tmp_path / "cut", resume=True)
    np.testing.assert_allclose([s["loss"] for s in resumed["steps"]], [s["loss"] for s in full["steps"]],
                               rtol=1e-5, atol=1e-6)
    # rounds really happened: the loss right after a refresh differs from the end of the last round
    assert len(full["steps"]) == 12


def test_raw_anchor_views_come_from_the_method(convnet_small):
    from simxir.augment import build_augment
    from simxir.train.config import TrainConfig
    from simxir.train.engine import method_views

    aug = build_augment("tiny", 8, (0.5,) * 3, (0.25,) * 3)
    assert method_views(SimXIR(convnet_small, SimXIRConfig()), aug, TrainConfig()) is aug
    views = method_views(SimXIR(convnet_small, SimXIRConfig(variant="raw-anchor")), aug, TrainConfig())
    x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    torch.testing.assert_close(views.views(x)[0], aug.eval(x))   # the anchor is the un-augmented image
