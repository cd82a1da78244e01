"""Between backward and the optimizer step: gradient clipping (no extra host sync) and the method's
hook; per-step cosine schedules of the weight decay and of method values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from train_toys import ToyAugment, ToyMethod, toy_dataset

from simxir.errors import UserError
from simxir.schedules import cosine_value
from simxir.train import TrainConfig, train
from simxir.train.config import MonitorConfig, OptimConfig, ScheduleConfig
from simxir.train.optim import build_optimizer
from simxir.train.schedule import apply_value_schedules, check_value_schedules
from simxir.train.step import train_step


class _Reads(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func.__name__.split(".")[0] in ("_local_scalar_dense", "nonzero", "is_nonzero"):
            self.n += 1
        return func(*args, **(kwargs or {}))


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 4)

    def forward(self, views, y=None):  # noqa: ANN001, ANN201
        v1, v2 = views
        return {"loss": 50 * (self.lin(v1) - self.lin(v2).flip(0)).pow(2).sum()}


def test_clipping_in_the_hook_equals_torchs_and_reads_nothing_more_from_the_device():
    torch.manual_seed(0)
    v1, v2 = torch.randn(8, 6), torch.randn(8, 6)
    a, b = _Model(), _Model()
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    seen = {}

    def clip() -> None:
        seen["grads"] = [p.grad.clone() for p in a.parameters()]
        seen["params"] = [p.detach().clone() for p in a.parameters()]
        torch.nn.utils.clip_grad_norm_(list(a.parameters()), 1.0, foreach=True)

    with _Reads() as reads:
        train_step(a, opt_a, [([v1, v2], None)], 1, None, before_step=clip)
    assert reads.n == 1                                    # the loss read, and nothing else
    # the hook ran after backward (gradients there) and before the step (parameters not moved)
    assert all(g.abs().sum() > 0 for g in seen["grads"])
    assert all(torch.equal(p0, p1) for p0, p1 in zip(seen["params"], [p.detach() for p in b.parameters()]))
    # by hand: backward, clip to norm 1, SGD step
    opt_b.zero_grad()
    b([v1, v2])["loss"].backward()
    norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in b.parameters()))
    assert norm > 1.0                                      # the clip had work to do
    for p in b.parameters():
        p.grad.mul_(1.0 / (norm + 1e-6))
    opt_b.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb)


def _dino_clip_gradients(model: nn.Module, clip: float) -> None:
    """DINO's utils.clip_gradients, as written there (per parameter, reading each norm to the host)."""
    for _, p in model.named_parameters():
        if p.grad is not None:
            param_norm = p.grad.data.norm(2)
            clip_coef = clip / (param_norm + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def test_per_parameter_clipping_is_dinos_and_reads_nothing_from_the_device():
    from simxir.train.engine import clip_per_param_

    torch.manual_seed(0)
    a, b = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3)), nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 3))
    b.load_state_dict(a.state_dict())
    x = torch.randn(8, 6)
    for m in (a, b):
        (50 * m(x).pow(2).sum()).backward()
    b[1].bias.grad.mul_(1e-4)                    # one gradient under the limit: left as it is
    a[1].bias.grad.mul_(1e-4)
    norms = [p.grad.norm() for p in a.parameters()]
    assert min(norms) < 0.5 < max(norms)          # some above the clip, one below
    with _Reads() as reads:
        clip_per_param_(list(a.parameters()), 0.5)
    assert reads.n == 0
    _dino_clip_gradients(b, 0.5)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-6, atol=1e-8)


def test_weight_decay_and_method_values_follow_the_cosine():
    @dataclass
    class Cfg:
        temperature: float = 0.2

    cfg = TrainConfig(optim=OptimConfig(weight_decay=0.04, weight_decay_end=0.4),
                      schedule=ScheduleConfig(method={"temperature": [0.2, 0.1]}))
    model, mcfg = nn.Linear(3, 3), Cfg()
    opt = build_optimizer(cfg.optim, model, 0.1)
    for step in (0, 37, 99):
        apply_value_schedules(cfg, opt, mcfg, step, 100)
        decay = next(g for g in opt.param_groups if g["name"] == "decay")
        assert decay["weight_decay"] == pytest.approx(cosine_value(step, 100, 0.04, 0.4))
        assert all(g["weight_decay"] == 0 for g in opt.param_groups if g["name"] == "no_decay")
        assert mcfg.temperature == pytest.approx(0.1 + 0.05 * (1 + math.cos(math.pi * step / 100)))
    with pytest.raises(UserError, match="no numeric field 'tau'"):
        check_value_schedules(TrainConfig(schedule=ScheduleConfig(method={"tau": [1, 2]})), mcfg)
    with pytest.raises(UserError, match="start, end"):
        check_value_schedules(TrainConfig(schedule=ScheduleConfig(method={"temperature": [1]})), mcfg)
    with pytest.raises(UserError, match="clip_grad"):
        check_value_schedules(TrainConfig(optim=OptimConfig(clip_grad=-1)), mcfg)


def test_the_engine_calls_the_hook_each_step_and_sets_scheduled_values_before_it(tmp_path):
    @dataclass
    class Cfg:
        scale: float = 1.0

    class Hooked(ToyMethod):
        def __init__(self) -> None:
            super().__init__()
            self.cfg = Cfg()
            self.calls: list[tuple[int, float, bool]] = []

        def before_optimizer_step(self, step: int, total_steps: int) -> None:
            grads = all(p.grad is not None for p in self.projector.parameters())
            self.calls.append((step, self.cfg.scale, grads))

    cfg = TrainConfig(epochs=2, batch_size=16, precision="fp32", channels_last=False, device="cpu", tensorboard=False,
                      optim=OptimConfig(name="sgd", lr=0.05, clip_grad=0.5),
                      schedule=ScheduleConfig(method={"scale": [2.0, 0.0]}), monitor=MonitorConfig(eval_size=16))
    m = Hooked()
    train(cfg, m, toy_dataset(), ToyAugment(), tmp_path / "run")
    total = 2 * (64 // 16)
    assert [c[0] for c in m.calls] == list(range(total)) and all(c[2] for c in m.calls)
    assert [c[1] for c in m.calls] == pytest.approx([cosine_value(s, total, 2.0, 0.0) for s in range(total)])


def test_schedules_and_clipping_are_configuration_keys():
    from simxir.config import ConfigError
    from simxir.train.assemble import build_config

    c = build_config("moco", None, ["schedule.method.temperature=[0.2, 0.1]", "schedule.method.ema=[0.99, 1]",
                                    "optim.clip_grad=3", "optim.weight_decay_end=0.4"], data="digits")
    assert c.schedule.method == {"temperature": [0.2, 0.1], "ema": [0.99, 1.0]}
    assert (c.optim.clip_grad, c.optim.weight_decay_end) == (3.0, 0.4)
    with pytest.raises(ConfigError, match="schedule.method.temperature"):
        build_config("moco", None, ["schedule.method.temperature=fast"], data="digits")


@pytest.mark.parametrize("name,cfg", [
    ("dino", {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8}),
    ("byol", {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16}),
    ("simsiam", {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16}),
    ("simxir", {})])
def test_a_multicrop_step_with_clipping_and_hooks_reads_the_device_once(name, cfg):
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train.engine import _before_step
    from simxir.train.model import prepare_model

    torch.manual_seed(0)
    method = build_method(name, build_backbone("convnet-small"), cfg)
    method.use_views(2, 2)
    trainable, model = prepare_model(method, None, torch.device("cpu"), channels_last=False)
    opt = build_optimizer(OptimConfig(name="sgd", weight_decay=0.04), method, 1e-3)   # CPU AdamW reads its step count
    before = _before_step(method, 3.0, lambda: 0, 10, "per_param")
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(8, 3, s, s, generator=g) for s in (16, 16, 8, 8)]
    with _Reads() as reads:
        loss, _ = train_step(model, opt, [(views, None)], 1, None, before_step=before)
        method.on_train_step_end(0, 10)
    assert math.isfinite(loss) and reads.n == 1            # the loss read, and nothing else
