"""The engine on toy data: resume reproduces the loss curve, the nan guard, checkpoints, logs."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from train_toys import Killed, ToyAugment, ToyMethod, kill_after, toy_dataset

from simxir.errors import UserError
from simxir.io import load_checkpoint
from simxir.train import TrainConfig, TrainingDiverged, train
from simxir.train.config import MonitorConfig, OptimConfig, ScheduleConfig


def _cfg(**kw) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, seed=5, precision="fp32", channels_last=False, device="cpu",
                log_every=1, tensorboard=False, optim=OptimConfig(name="sgd", lr=0.5, weight_decay=1e-4),
                schedule=ScheduleConfig(warmup_epochs=1), monitor=MonitorConfig(eval_size=16))
    base.update(kw)
    return TrainConfig(**base)


def _method(seed: int = 0, **kw) -> ToyMethod:
    torch.manual_seed(seed)
    return ToyMethod(**kw)


def _losses(result) -> list[float]:
    return [r["loss"] for r in result["steps"]]


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])
def test_resume_after_a_kill_reproduces_the_uninterrupted_run(tmp_path, precision):
    ds, aug = toy_dataset(), ToyAugment()
    cfg = _cfg(epochs=2, precision=precision, channels_last=precision == "bf16", accumulate=2)
    full = train(cfg, _method(), ds, aug, tmp_path / "full")
    with pytest.raises(Killed):   # the process dies right after epoch 1's checkpoint
        train(cfg, _method(), ds, aug, tmp_path / "cut", callbacks=[kill_after(1)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["epoch"] == 1
    # a fresh process: a differently initialised model, other global RNG state
    torch.manual_seed(1234)
    resumed = train(cfg, _method(seed=99), ds, aug, tmp_path / "cut", resume=True)

    assert len(_losses(full)) == 2 * (64 // 16) == len(_losses(resumed))
    np.testing.assert_allclose(_losses(resumed), _losses(full), rtol=1e-6, atol=1e-7)
    assert [e["epoch"] for e in resumed["epochs"]] == [1, 2]
    for key in ("loss", "probe_test_top1", "z_std", "feat_erank"):
        np.testing.assert_allclose([e[key] for e in resumed["epochs"]], [e[key] for e in full["epochs"]],
                                   rtol=1e-6, atol=1e-7, err_msg=key)
    a = torch.load(tmp_path / "full" / "encoder.pt", weights_only=True)
    b = torch.load(tmp_path / "cut" / "encoder.pt", weights_only=True)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)
    with open(tmp_path / "cut" / "steps.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))   # no duplicated or lost rows
    np.testing.assert_allclose([float(r["loss"]) for r in rows], _losses(full), rtol=1e-6)


def test_auto_precision_keeps_fp32_without_a_trial_for_a_model_too_small_to_matter(monkeypatch):
    """Under MIN_TRIAL_GFLOP (counted, so it cannot tip) nothing is timed: two runs of one command agree."""
    from simxir.models import build_backbone
    from simxir.train import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    monkeypatch.setattr(precision, "time_steps", lambda *a: pytest.fail("no trial expected"))
    plan = precision.choose_precision(_auto_plan(), _method(), 8)
    assert (plan.amp_dtype, plan.channels_last) == (None, False) and "too small" in plan.precision_reason
    # the count itself: convnet-small's convolutions at 32 px, written out (5.06 GFLOP for 64 x 2 views)
    convs = [(3, 32, 32), (32, 64, 16), (64, 128, 8), (128, 128, 8)]   # (in, out, output side)
    per_image = sum(2 * 9 * cin * cout * side * side for cin, cout, side in convs)

    class Backbone(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = build_backbone("convnet-small")

        def forward(self, views):
            return sum(self.b(v).sum() for v in views)

    assert precision.step_gflops(Backbone(), torch.device("cpu"), 32, 64) == pytest.approx(
        2 * 64 * per_image / 1e9, rel=1e-6)


def test_resume_keeps_the_precision_auto_chose_when_the_trial_would_now_choose_otherwise(tmp_path, monkeypatch):
    """precision auto's trial is timed, so a new process can measure the other way; the resumed run
    must continue in the precision its checkpoint was trained in, or it is not the same run."""
    from simxir.train import precision

    ds, aug = toy_dataset(), ToyAugment()
    cfg = _cfg(epochs=2, precision="auto", channels_last="auto")
    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    monkeypatch.setattr(precision, "step_gflops", lambda *a: 2 * precision.MIN_TRIAL_GFLOP)
    fast = {True: (0.5, 1.0, 1.1), False: (1.5, 1.0, 1.1)}   # bf16+channels_last fastest, then not
    bf16_wins = [True]
    monkeypatch.setattr(precision, "time_steps",
                        lambda m, c, *a: dict(zip(precision.candidates(_auto_plan()), fast[bf16_wins[0]]))[c])
    full = train(cfg, _method(), ds, aug, tmp_path / "full")
    with pytest.raises(Killed):
        train(cfg, _method(), ds, aug, tmp_path / "cut", callbacks=[kill_after(1)])
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["precision"] == {
        "amp": "bfloat16", "channels_last": True, "device": "cpu", "tf32": False}
    bf16_wins[0] = False   # the resumed process's trial would now keep fp32
    assert precision.choose_precision(_auto_plan(), _method(), 8).amp_dtype is None
    resumed = train(cfg, _method(seed=99), ds, aug, tmp_path / "cut", resume=True)
    np.testing.assert_allclose(_losses(resumed), _losses(full), rtol=1e-6, atol=1e-7)
    fp32 = train(_cfg(epochs=2), _method(), ds, aug, tmp_path / "fp32")
    assert not np.allclose(_losses(fp32), _losses(full), rtol=1e-6, atol=1e-7)   # the choice shows


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    ds, aug = toy_dataset(), ToyAugment()
    a = train(_cfg(epochs=1), _method(), ds, aug, tmp_path / "a")
    b = train(_cfg(epochs=1), _method(), ds, aug, tmp_path / "b")
    c = train(_cfg(epochs=1, seed=6), _method(), ds, aug, tmp_path / "c")
    assert _losses(a) == _losses(b)
    assert _losses(a) != _losses(c)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path):
    ds, aug = toy_dataset(), ToyAugment()
    run = tmp_path / "run"
    method = _method(nan_at_step=6)        # epoch 2 (4 steps per epoch), its 3rd step
    with pytest.raises(TrainingDiverged, match=r"epoch 2, step 3 of the epoch \(global step 7\)") as exc:
        train(_cfg(), method, ds, aug, run)
    assert str(run / "checkpoint.pt") in str(exc.value)
    ckpt = load_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and ckpt["step"] == 4
    assert all(math.isfinite(float(v.float().sum())) for v in ckpt["model"].values())
    # atomic writes leave no partial/temporary files behind
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "config.yaml", "metrics.csv",
                                                     "predictor", "steps.csv"]
    # the parameters in memory were not stepped with the nan gradient either
    assert all(torch.isfinite(p).all() for p in method.parameters())


def test_nan_before_any_checkpoint_says_so(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint was written yet"):
        train(_cfg(), _method(nan_at_step=0), toy_dataset(), ToyAugment(), tmp_path / "r")


@pytest.mark.parametrize("interval, held", [(0, [1, 2, 3, 4]), (3600, [1, 1, 1, 4])])
def test_checkpoint_interval_keeps_the_first_and_last_epoch(tmp_path, interval, held):
    run, seen = tmp_path / "run", []
    cfg = _cfg(epochs=4, checkpoint_interval_s=interval)
    full = train(cfg, _method(), toy_dataset(), ToyAugment(), run,
                 callbacks=[lambda epoch, m: seen.append(load_checkpoint(run / "checkpoint.pt")["epoch"])])
    assert seen == held
    # a NaN names the epoch the checkpoint really holds, not the last finished one
    with pytest.raises(TrainingDiverged, match=rf"epoch 3, step 1 .*\(after epoch {held[1]}\)"):
        train(cfg, _method(nan_at_step=8), toy_dataset(), ToyAugment(), tmp_path / "nan")
    # a run stopped by a callback is checkpointed where it stopped
    stop = tmp_path / "stop"
    res = train(cfg, _method(), toy_dataset(), ToyAugment(), stop, callbacks=[lambda epoch, m: epoch == 2])
    assert res["stopped_early"] and load_checkpoint(stop / "checkpoint.pt")["epoch"] == 2
    # and resuming a checkpoint older than the last finished epoch reproduces the uninterrupted run
    cut = tmp_path / "cut"
    with pytest.raises(Killed):
        train(cfg, _method(), toy_dataset(), ToyAugment(), cut, callbacks=[kill_after(3)])
    resumed = train(cfg, _method(seed=99), toy_dataset(), ToyAugment(), cut, resume=True)
    np.testing.assert_allclose(_losses(resumed), _losses(full), rtol=1e-6, atol=1e-7)


def test_checkpoint_contents_logs_and_exports(tmp_path):
    run = tmp_path / "run"
    method = _method()
    res = train(_cfg(epochs=2, monitor=MonitorConfig(eval_size=16, every=2)), method, toy_dataset(),
                ToyAugment(), run,
                evaluator=lambda backbone, epoch: {"knn": {"5": np.float64(0.5)}, "n": torch.tensor(3)})
    assert res["epochs"][1]["knn"] == {"5": 0.5} and type(res["epochs"][1]["knn"]["5"]) is float
    # monitors only on monitor epochs (every=2), the predictor is saved every epoch
    assert "probe_test_top1" not in res["epochs"][0] and "probe_test_top1" in res["epochs"][1]
    ckpt = load_checkpoint(run / "checkpoint.pt")  # weights_only=True
    assert {"model", "probe", "optimizer", "scaler", "epoch", "step", "rng", "history", "config"} <= set(ckpt)
    assert ckpt["epoch"] == 2 and ckpt["step"] == 8 and len(ckpt["history"]) == 2
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    np.testing.assert_allclose([float(r["loss"]) for r in rows], [e["loss"] for e in res["epochs"]])
    # predictor snapshots per epoch equal the final weight at the last epoch
    w = np.load(run / "predictor" / "epoch_0002.npy")
    np.testing.assert_allclose(w, method.predictor.weight.detach().numpy(), rtol=1e-6)
    assert (run / "predictor" / "epoch_0001.npy").is_file()
    enc = torch.load(run / "encoder.pt", weights_only=True)
    assert set(enc) == set(method.backbone.state_dict())
    assert (run / "encoder.safetensors").stat().st_size > 0
    assert res["encoder"] == str(run / "encoder.safetensors")
    assert method.epochs_started == [0, 1]
    assert (run / "config.yaml").read_text().count("batch_size: 16") == 1


def test_out_dir_with_checkpoint_needs_resume_and_resume_needs_checkpoint(tmp_path):
    ds, aug = toy_dataset(), ToyAugment()
    with pytest.raises(UserError, match="no checkpoint"):
        train(_cfg(epochs=1), _method(), ds, aug, tmp_path / "r", resume=True)
    train(_cfg(epochs=1), _method(), ds, aug, tmp_path / "r")
    with pytest.raises(UserError, match="--resume"):
        train(_cfg(epochs=1), _method(), ds, aug, tmp_path / "r")


@pytest.mark.parametrize("kw,msg", [({"batch_size": 96, "accumulate": 48}, "no smaller batch"),
                                    ({"batch_size": 16, "accumulate": 3}, "divisible"),
                                    ({"precision": "fp16"}, "fp16 needs a CUDA")])
def test_bad_settings_are_user_errors(tmp_path, kw, msg):
    with pytest.raises(UserError, match=msg):
        train(_cfg(**kw), _method(), toy_dataset(), ToyAugment(), tmp_path / "r")


def test_a_batch_larger_than_the_data_trains_with_the_largest_power_of_two_that_fits(tmp_path):
    from simxir.config import load_recipe

    res = train(_cfg(batch_size=100, epochs=1), _method(), toy_dataset(n_train=40), ToyAugment(), tmp_path / "r")
    assert res["steps"][-1]["step"] == 1                       # 40 images: one batch of 32
    assert load_recipe(TrainConfig, tmp_path / "r" / "config.yaml").batch_size == 32


def test_gradient_accumulation_of_a_per_sample_loss_equals_the_full_batch(tmp_path):
    """For a BN-free method with a per-sample mean loss, 4 micro-batches == one batch."""
    from torch import nn

    from simxir.train import prepare_model, train_step
    from simxir.train.optim import build_optimizer

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(48, 6))
            self.backbone.feature_dim = 6

        def forward(self, views):
            v1, v2 = views
            f1 = self.backbone(v1)
            return {"loss": (f1 - self.backbone(v2)).pow(2).sum(1).mean() + f1.pow(2).mean(),
                    "feats1": f1.detach()}

    torch.manual_seed(0)
    v1, v2, y = torch.randn(16, 3, 4, 4), torch.randn(16, 3, 4, 4), torch.randint(0, 3, (16,))
    params = []
    for n_micro in (1, 4):
        torch.manual_seed(0)
        m = Plain()
        probe = nn.Linear(6, 3)
        trainable, model = prepare_model(m, probe, torch.device("cpu"), channels_last=False)
        opt = build_optimizer(OptimConfig(name="sgd", lr=0.1), m, 0.1, [{"params": list(probe.parameters())}])
        k = 16 // n_micro
        batches = [([v1[i:i + k], v2[i:i + k]], y[i:i + k]) for i in range(0, 16, k)]
        train_step(model, opt, batches, n_micro, None)
        params.append([p.detach().clone() for p in trainable.parameters()])
    for a, b in zip(*params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_collapsed_projection_marks_the_run_collapsed(tmp_path):
    method = _method()
    method.project = lambda x: torch.ones(x.shape[0], 8, device=x.device)   # every embedding alike
    res = train(_cfg(epochs=1), method, toy_dataset(), ToyAugment(), tmp_path / "r")
    last = res["epochs"][-1]
    assert res["collapsed"] is True and last["collapsed"] is True
    assert last["collapse_reasons"] == "z_std"
    assert last["z_std"] == 0.0 and math.isnan(last["decorrelation"])   # undefined, not a number


# only the scale-collapse rule (the toy's few-step embeddings fail the normalized-std rule anyway)
SPREAD_ONLY = MonitorConfig(eval_size=16, collapse_std_ratio=0.0, collapse_erank=0.0)


class ShrinkingToy(ToyMethod):
    """ToyMethod whose reported embeddings shrink by ``factor`` per optimizer step (scale collapse)."""

    def __init__(self, factor: float, scale_sensitive: bool = True, **kw):
        super().__init__(**kw)
        self.factor = factor
        self.scale_sensitive = scale_sensitive

    def forward(self, views):
        out = super().forward(views)
        scale = self.factor ** self.steps_done
        return {**out, "z1": out["z1"] * scale, "z2": out["z2"] * scale}


def test_embeddings_shrinking_towards_zero_are_a_scale_collapse(tmp_path):
    torch.manual_seed(0)
    res = train(_cfg(epochs=2, monitor=SPREAD_ONLY), ShrinkingToy(0.3), toy_dataset(), ToyAugment(),
                tmp_path / "r")
    first, last = res["epochs"][0], res["epochs"][-1]
    # the reference is the first step's spread; 4 steps per epoch, so epoch 2 averages 0.3^4..0.3^7
    assert first["z_spread_init"] > 0
    assert last["z_spread_ratio"] == pytest.approx(last["z_spread"] / first["z_spread_init"])
    assert last["z_spread_ratio"] < 0.1
    assert res["collapsed"] is True and last["collapsed"] is True
    assert last["collapse_reasons"] == "z_spread"
    # a scale-free loss (normalized embeddings) does not get lower by shrinking: not a collapse
    torch.manual_seed(0)
    free = train(_cfg(epochs=2, monitor=SPREAD_ONLY), ShrinkingToy(0.3, scale_sensitive=False),
                 toy_dataset(), ToyAugment(), tmp_path / "free")
    assert free["epochs"][-1]["z_spread_ratio"] == pytest.approx(last["z_spread_ratio"])
    assert free["collapsed"] is False


def test_spread_ratio_of_a_healthy_run_and_after_resume(tmp_path):
    ds, aug = toy_dataset(), ToyAugment()
    method = _method()
    method.scale_sensitive = True
    full = train(_cfg(epochs=2, monitor=SPREAD_ONLY), method, ds, aug, tmp_path / "full")
    last = full["epochs"][-1]
    assert last["z_spread_ratio"] > 0.1 and full["collapsed"] is False
    assert last["collapse_reasons"] == ""

    def stop_after_first(epoch, _metrics):
        return epoch == 1

    cfg = _cfg(epochs=2, monitor=SPREAD_ONLY)
    train(cfg, _method(), ds, aug, tmp_path / "cut", callbacks=(stop_after_first,))
    resumed = train(cfg, _method(), ds, aug, tmp_path / "cut", resume=True)
    assert resumed["epochs"][0]["z_spread_init"] == full["epochs"][0]["z_spread_init"]
    assert resumed["epochs"][-1]["z_spread_ratio"] == pytest.approx(last["z_spread_ratio"], rel=1e-6)


def test_threads_sets_torch_intra_op_threads_and_rejects_negative(tmp_path):
    before = torch.get_num_threads()
    try:
        train(_cfg(epochs=1, threads=1), _method(), toy_dataset(), ToyAugment(), tmp_path / "r")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError, match="threads"):
        train(_cfg(epochs=1, threads=-2), _method(), toy_dataset(), ToyAugment(), tmp_path / "r2")


def test_auto_precision_uses_bf16_only_where_native(monkeypatch):
    """A GPU that only emulates bf16 (V100, T4) gets fp16 + GradScaler; a native one bf16."""
    from simxir.train.plan import resolve_precision

    calls = []

    def native_only(including_emulation=True):
        calls.append(including_emulation)
        return including_emulation  # this mocked GPU emulates bf16 but has no native support

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", native_only)
    assert resolve_precision("auto", torch.device("cuda", 0)) == torch.float16
    assert calls == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_precision("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_precision("bf16", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_precision("fp32", torch.device("cuda", 0)) is None


def _auto_plan(channels_last="auto"):
    from simxir.train.plan import plan_run

    return plan_run(_cfg(precision="auto", channels_last=channels_last), 64, torch.device("cpu"))


def test_auto_precision_on_a_cpu_without_bf16_is_fp32_without_a_trial(monkeypatch):
    from simxir.train import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: False)
    monkeypatch.setattr(precision, "time_steps", lambda *a: pytest.fail("no trial expected"))
    plan = precision.choose_precision(_auto_plan(), _method(), 8)
    assert plan.amp_dtype is None and not plan.channels_last and "no native bf16" in plan.precision_reason
    assert precision.choose_precision(_auto_plan(channels_last=True), _method(), 8).channels_last


@pytest.mark.parametrize("times,expected", [((0.5, 1.0, 1.1), (torch.bfloat16, True)),
                                            ((1.05, 1.0, 1.2), (None, False)),
                                            ((1.05, 1.2, 0.9), (None, True)),
                                            ((0.95, 1.0, 0.93), (None, False))])   # near tie: fp32
def test_auto_precision_on_a_bf16_cpu_keeps_the_fastest_measured_candidate(monkeypatch, times, expected):
    """bf16 is kept only when it measured faster than fp32 (never slower than fp32), and any other
    candidate only when at least MARGIN faster (a near tie keeps the baseline)."""
    from simxir.train import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    monkeypatch.setattr(precision, "step_gflops", lambda *a: 2 * precision.MIN_TRIAL_GFLOP)
    timing = dict(zip(precision.candidates(_auto_plan()), times, strict=True))
    monkeypatch.setattr(precision, "time_steps", lambda m, c, *a: timing[c])
    plan = precision.choose_precision(_auto_plan(), _method(), 8)
    assert (plan.amp_dtype, plan.channels_last) == expected
    assert "measured" in plan.precision_reason
    # a set channels_last is kept: only the precision is measured
    fixed = precision.candidates(_auto_plan(channels_last=False))
    assert fixed == [(torch.bfloat16, False), (None, False)]


def test_the_precision_trial_leaves_the_model_and_rng_unchanged(monkeypatch):
    from simxir.train import precision

    monkeypatch.setattr(precision, "bf16_supported", lambda device: True)
    m = _method()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    rng = torch.get_rng_state()
    plan = precision.choose_precision(_auto_plan(), m, 8)
    assert plan.amp_dtype in (None, torch.bfloat16)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


def test_resume_applies_a_changed_lr_and_refuses_what_cannot_change(tmp_path):
    """--resume optim.lr=... is applied for real (the optimizer's lr follows it, not the checkpoint's);
    changing the optimizer family or the batch is refused before anything in the run is rewritten."""
    ds, aug = toy_dataset(), ToyAugment()
    cfg = _cfg(epochs=2, schedule=ScheduleConfig(name="constant"))
    with pytest.raises(Killed):
        train(cfg, _method(), ds, aug, tmp_path / "cut", callbacks=[kill_after(1)])
    saved = (tmp_path / "cut" / "config.yaml").read_bytes()
    for bad, key in ((dict(optim=OptimConfig(name="adamw", lr=0.5, weight_decay=1e-4)), "optim.name"),
                     (dict(batch_size=32), "batch_size")):
        with pytest.raises(UserError, match=f"cannot change {key}"):
            train(_cfg(epochs=2, schedule=ScheduleConfig(name="constant"), **bad), _method(), ds, aug,
                  tmp_path / "cut", resume=True)
        assert (tmp_path / "cut" / "config.yaml").read_bytes() == saved
    faster = _cfg(epochs=2, schedule=ScheduleConfig(name="constant"),
                  optim=OptimConfig(name="sgd", lr=0.05, weight_decay=1e-4))
    resumed = train(faster, _method(), ds, aug, tmp_path / "cut", resume=True)
    lrs = [s["lr"] for s in resumed["steps"]]
    assert lrs[:4] == [0.5 * 16 / 256] * 4                 # epoch 1, as trained (scaled by batch/256)
    assert lrs[4:] == [pytest.approx(0.05 * 16 / 256)] * 4   # epoch 2 under the new lr


def test_missing_tensorboard_is_said_once(tmp_path, capsys, monkeypatch):
    import builtins

    from simxir.train.logging import TensorBoard

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ModuleNotFoundError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    monkeypatch.delenv("SIMXIR_QUIET", raising=False)
    tb = TensorBoard(tmp_path / "tb", enabled=True)
    assert tb.writer is None
    err = capsys.readouterr().err
    assert "tensorboard: not written" in err and "tensorboard=false" in err
    TensorBoard(tmp_path / "tb", enabled=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_shows_the_epoch_mean_loss(tmp_path, monkeypatch):
    from simxir.augment import build_augment
    from simxir.data import load_dataset
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train import engine
    from simxir.train.assemble import build_config

    shown: list[float] = []

    class Bar:
        def __init__(self, it, **_):
            self.it = it

        def __iter__(self):
            return iter(self.it)

        def set_postfix(self, **kw):
            shown.append(float(kw["loss"]))

    monkeypatch.setattr(engine, "progress", Bar)
    cfg = build_config("byol", None, ["epochs=1", "batch_size=64", "log_every=5", "tensorboard=false",
                                      "monitor.eval_size=64"])
    ds = load_dataset("digits")
    torch.manual_seed(0)
    method = build_method("byol", build_backbone(cfg.backbone), dict(cfg.method))
    res = engine.train(cfg, method, ds, build_augment(cfg.augment, ds.image_size, ds.mean, ds.std), tmp_path / "r")
    steps = res["steps"]
    assert len(steps) >= 2 and steps[0]["loss"] != steps[-1]["loss"]
    assert shown[-1] == pytest.approx(res["epochs"][0]["loss"], abs=1e-4)   # the epoch mean, not one step


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg", "bridge", "simclr"])
def test_batch_statistics_losses_refuse_accumulation_with_one_line(tmp_path, name):
    from simxir.data import load_dataset
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train.assemble import build_config

    cfg = build_config(name, None, ["batch_size=64", "accumulate=2", "epochs=1", "tensorboard=false"])
    ds = load_dataset("digits")
    method = build_method(name, build_backbone("convnet-small"), cfg.method)
    with pytest.raises(UserError, match=r"accumulate=2: .* micro-batches of 32 images .* more processes"):
        train(cfg, method, ds, ToyAugment(), tmp_path / name)
    assert not (tmp_path / name / "checkpoint.pt").exists()


def test_mean_over_samples_losses_accumulate(tmp_path):
    from simxir.data import load_dataset
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train.assemble import build_config

    cfg = build_config("simsiam", None, ["batch_size=64", "accumulate=2", "epochs=1", "tensorboard=false",
                                         "monitor.eval_size=64"])
    res = train(cfg, build_method("simsiam", build_backbone("convnet-small"), cfg.method), load_dataset("digits"),
                ToyAugment(), tmp_path / "s")
    assert len(res["epochs"]) == 1
