"""A user's own nn.Module (not one of simxir's backbones) through the Python API: every method and
SimXIR train it on the engine, resume it, and write its own state_dict, which a fresh instance of the
user's class loads back with identical features; config.yaml records what ran."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from simxir.augment import build_augment
from simxir.data import load_dataset
from simxir.errors import UserError
from simxir.methods import PRETRAIN_METHODS, SimXIR, SimXIRConfig, build_method
from simxir.train import train
from simxir.train.assemble import build_config


class Pooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean((2, 3))


class MapOut(nn.Module):            # returns a feature map, not a feature batch
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture(scope="module")
def digits():
    data = load_dataset("digits")
    return data, build_augment("tiny", data.image_size, data.mean, data.std)


SMALL = {"byol": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16},
         "simsiam": {"proj_hidden": 16, "proj_dim": 8, "pred_hidden": 16},
         "barlow_twins": {"proj_sizes": [16, 8]}, "vicreg": {"proj_sizes": [16, 8]},
         "moco": {"proj_hidden": 16, "proj_dim": 8, "queue_size": 64}, "simclr": {"proj_hidden": 16, "proj_dim": 8},
         "bridge": {"proj_sizes": [16, 8]}, "dino": {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8}}
OVER = ["epochs=1", "batch_size=256", "tensorboard=false", "monitor.eval_size=64", "probe.enabled=false"]


@pytest.mark.parametrize("name", sorted(PRETRAIN_METHODS))
def test_every_method_trains_a_users_module_and_saves_its_own_state_dict(tmp_path, digits, name):
    data, augment = digits
    assert set(SMALL) == set(PRETRAIN_METHODS)
    cfg = build_config(name, None, OVER + [f"method.{k}={v}" for k, v in SMALL[name].items()])
    torch.manual_seed(0)
    module = Pooled()
    method = build_method(name, module, cfg.method)
    assert module.feature_dim == 12                          # measured once
    augment = build_augment("auto", data.image_size, data.mean, data.std, multicrop=cfg.multicrop)   # dino: 2 + 8
    res = train(cfg, method, data, augment, tmp_path / name)
    back = Pooled()
    back.load_state_dict(load_file(tmp_path / name / "encoder.safetensors"))   # the module's own keys
    x = augment.eval(data.test.images[:16])
    torch.testing.assert_close(back.eval()(x), method.backbone.eval()(x))
    assert res["encoder"] and set(load_file(tmp_path / name / "encoder.safetensors")) == set(Pooled().state_dict())
    saved = yaml.safe_load((tmp_path / name / "config.yaml").read_text())
    assert saved["backbone"] == f"python:{__name__}.Pooled" and saved["method_name"] == name


def test_simxir_tunes_a_users_module_and_resume_continues_it(tmp_path, digits):
    data, augment = digits
    cfg = build_config("simxir", None, ["epochs=1", "batch_size=256", "tensorboard=false"], data="digits")
    torch.manual_seed(0)
    start = Pooled()
    before = {k: v.clone() for k, v in start.state_dict().items()}
    train(cfg, SimXIR(start, SimXIRConfig()), data, augment, tmp_path / "ft")
    longer = build_config("simxir", None, ["epochs=2", "batch_size=256", "tensorboard=false"], data="digits")
    again = Pooled()
    again.load_state_dict(before)          # resume restores the weights from the checkpoint, not from here
    res = train(longer, SimXIR(again, SimXIRConfig()), data, augment, tmp_path / "ft", resume=True)
    assert [e["epoch"] for e in res["epochs"]] == [1, 2]
    tuned = Pooled()
    tuned.load_state_dict(load_file(tmp_path / "ft" / "encoder.safetensors"))
    assert any(not torch.equal(tuned.state_dict()[k], before[k]) for k in before)
    x = augment.eval(data.test.images[:16])
    torch.testing.assert_close(tuned.eval()(x), again.eval()(x))
    saved = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert saved["method_name"] == "simxir" and saved["backbone"].endswith(".Pooled")


def test_a_module_that_is_not_an_encoder_is_one_line_and_nothing_is_written(tmp_path):
    with pytest.raises(UserError, match=r"MapOut: expected a module mapping images .* got \(2, 4, 32, 32\)"):
        build_method("simsiam", MapOut())
    assert list(tmp_path.iterdir()) == []


def test_load_encoder_names_a_module_file_and_how_to_load_it(tmp_path, digits):
    from simxir.models import load_encoder
    from simxir.train.export import write_run_encoder

    module = Pooled()
    module.feature_dim = 12
    path = write_run_encoder(module, tmp_path)
    with pytest.raises(UserError, match="user's own module .*Pooled.*load_state_dict"):
        load_encoder(path)


def test_the_nan_guard_stops_a_users_module_run_with_one_line(tmp_path, digits):
    from simxir.errors import TrainingDiverged

    data, augment = digits
    cfg = build_config("simsiam", None, [*OVER[1:], "epochs=3", "optim.lr=1e30",
                                         *[f"method.{k}={v}" for k, v in SMALL["simsiam"].items()]])
    torch.manual_seed(0)
    with pytest.raises(TrainingDiverged, match="loss is nan"):
        train(cfg, build_method("simsiam", Pooled(), cfg.method), data, augment, tmp_path / "r")
    assert not (tmp_path / "r" / "encoder.safetensors").exists()      # nothing diverged is exported
