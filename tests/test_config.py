from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from simxir.config import ConfigError, apply_overrides, load_recipe, save_recipe


@dataclass
class Optim:
    lr: float = 0.1
    name: Literal["sgd", "adamw", "lars"] = "sgd"


@dataclass
class Cfg:
    epochs: int = 10
    seed: int = 0
    backbone: str = "resnet18"
    sizes: list[int] = field(default_factory=lambda: [2048, 2048])
    amp: bool = True
    note: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(Cfg(), ["epochs=3", "optim.lr=1e-4", "optim.name=lars", "amp=false",
                                  "sizes=[8,8,8]", "note=none", "backbone=resnet50"])
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.optim.lr == pytest.approx(1e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.name == "lars"
    assert cfg.amp is False
    assert cfg.sizes == [8, 8, 8]
    assert cfg.note is None
    assert cfg.backbone == "resnet50"
    assert Cfg().epochs == 10  # the default is untouched


def test_comma_list_override():
    assert apply_overrides(Cfg(), ["sizes=16,32"]).sizes == [16, 32]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("epoch=3", "unknown key 'epoch'; valid keys: epochs, seed"),
        ("optim.momentum=0.9", "valid keys: optim.lr, optim.name"),
        ("epochs=three", "epochs: expected an integer"),
        ("optim.name=adam", "expected one of ['sgd', 'adamw', 'lars']"),
        ("amp=maybe", "amp: expected true/false"),
        ("epochs", "expected key=value"),
        ("seed.x=1", "has no sub-keys"),
    ],
)
def test_bad_overrides_name_the_key(override, fragment):
    with pytest.raises(ConfigError) as exc:
        apply_overrides(Cfg(), [override])
    assert fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_recipe_round_trip(tmp_path):
    cfg = apply_overrides(Cfg(), ["epochs=7", "optim.lr=0.3"])
    path = tmp_path / "r.yaml"
    save_recipe(cfg, path)
    assert load_recipe(Cfg, path) == cfg
    assert load_recipe(Cfg, path, ["seed=5"]).seed == 5


def test_recipe_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_recipe(Cfg, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nwarmup: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key warmup"):
        load_recipe(Cfg, bad)
    notmap = tmp_path / "list.yaml"
    notmap.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a YAML mapping"):
        load_recipe(Cfg, notmap)
