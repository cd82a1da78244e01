"""The fine-tuning run's config: SimXIR's defaults and recipes through the one layering function."""

from __future__ import annotations

import pytest

from simxir.errors import UserError
from simxir.methods import SimXIR


def test_every_finetune_recipe_builds():
    from pathlib import Path

    from simxir.finetune.run import build_finetune_config

    recipes = sorted((Path(__file__).resolve().parents[2] / "recipes" / "finetune").glob("*.yaml"))
    assert len(recipes) >= 3
    for path in recipes:
        cfg = build_finetune_config(path, [], data="digits")
        assert cfg.method_name == "simxir" and cfg.optim.scale_lr is False, path


def test_simxir_is_a_registered_method_layered_like_every_other():
    from simxir.finetune.run import build_finetune_config
    from simxir.methods import METHODS, PRETRAIN_METHODS
    from simxir.train.assemble import build_config

    assert METHODS["simxir"] is SimXIR and "simxir" not in PRETRAIN_METHODS
    ft = build_finetune_config(None, ["epochs=4", "method.symmetric=true"], data="digits", rounds=2,
                               loss="cosine")
    same = build_config("simxir", None, ["epochs=4", "method.symmetric=true", "method.loss=cosine",
                                         "method.epochs_per_round=2"], data="digits")
    assert ft == same
    assert (ft.optim.name, ft.optim.lr, ft.optim.scale_lr, ft.batch_size) == ("sgd", 5e-4, False, 512)
    with pytest.raises(UserError, match="--data: required"):
        build_finetune_config(None, [])


def test_pretrain_refuses_a_fine_tuning_method(cli, tmp_path):
    r = cli(["pretrain", "--method", "simxir", "--data", "digits", "--out", tmp_path / "run"])
    assert r.code == 2 and "simxir finetune --encoder" in r.error
