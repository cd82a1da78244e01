"""Every method learns with nothing but its defaults: ``simxir pretrain --method M`` on digits.

Digits is the embedded default data set; its random-init convnet-small is already a strong kNN
classifier (~94%), so "learns" is measured against that encoder (the run's own initial weights).
Margin: 1.0 kNN point (3.6 of 360 test images); the defaults measured +2.0 to +4.5 (BYOL lowest).
"""

from __future__ import annotations

import pytest
import torch

from simxir.augment import build_augment
from simxir.data import load_dataset
from simxir.eval import evaluate_encoder
from simxir.methods import PRETRAIN_METHODS, build_method
from simxir.models import build_backbone
from simxir.train.assemble import build_config
from simxir.train.pretrain import run_pretrain

MARGIN = 1.0
KS = (5, 11, 21)


def _best_knn(backbone, dataset, augment) -> float:
    res = evaluate_encoder(backbone, dataset, augment, knn_ks=KS, linear=False, weighted_temperature=None)
    return max(res["knn"]["cosine"].values())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRETRAIN_METHODS))
def test_default_configuration_learns_on_digits(tmp_path, digits, name):
    cfg = build_config(name, None, ["tensorboard=false"])     # no recipe, no other override
    assert cfg.data == "digits" and cfg.epochs is None        # the defaults, as a user gets them
    augment = build_augment(cfg.augment, digits.image_size, digits.mean, digits.std)
    torch.manual_seed(cfg.seed)
    random_knn = _best_knn(build_backbone(cfg.backbone), digits, augment)
    res = run_pretrain(cfg, tmp_path / name)                  # raises TrainingDiverged on nan
    assert [m["epoch"] for m in res["epochs"] if m.get("collapsed")] == []
    assert not res["collapsed"]
    trained = build_backbone(cfg.backbone)
    trained.load_state_dict(torch.load(tmp_path / name / "encoder.pt", weights_only=True))
    knn = _best_knn(trained, digits, augment)
    assert knn >= random_knn + MARGIN, f"{name}: kNN {knn:.2f} vs random init {random_knn:.2f}"


def test_method_defaults_sit_beneath_recipes_and_overrides(tmp_path):
    plain = build_config("vicreg", None, [])
    assert (plain.optim.name, plain.optim.lr, plain.optim.weight_decay) == ("adamw", 1e-3, 1e-4)
    assert build_config("moco", None, []).optim.name == "sgd"          # no own defaults: TrainConfig's
    assert build_config("vicreg", None, ["optim.name=lars"]).optim.name == "lars"
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  name: sgd\n  lr: 0.2\n")
    from_recipe = build_config("barlow_twins", recipe, [])
    # the recipe wins where it speaks; the method's default fills what it leaves out
    assert (from_recipe.optim.name, from_recipe.optim.lr, from_recipe.optim.weight_decay) == ("sgd", 0.2, 1e-4)


def test_byol_has_the_byol_papers_projector_by_default():
    assert build_config("byol", None, []).method["proj_bn"] is True


def test_auto_epochs_and_augment_follow_the_data():
    from simxir.train.schedule import auto_epochs

    assert auto_epochs(5) == 30          # digits at batch 256: 150 steps
    assert auto_epochs(39) == 10         # the CIFAR 12k subset: 390 steps
    assert auto_epochs(10_000) == 10
    assert build_augment("auto", 16, (0.5,) * 3, (0.2,) * 3).recipe == "tiny"
    assert build_augment("auto", 32, (0.5,) * 3, (0.2,) * 3).recipe == "simsiam-cifar"
    assert build_augment("auto", 224, (0.5,) * 3, (0.2,) * 3).recipe == "byol-imagenet"


@pytest.mark.slow
def test_bridge_covariance_term_stays_finite_at_the_papers_2048_projector(tmp_path, digits):
    """d = 2048 > batch: the batch covariance is rank-deficient; with the default optimizer (AdamW)
    the loss stays finite over an epoch of digits, 5 steps (SGD 0.05 reached nan at step 4)."""
    cfg = build_config("bridge", None, ["tensorboard=false", "epochs=1", "method.proj_sizes=[2048,2048,2048]",
                                        "monitor.eval_size=64", "probe.enabled=false"])
    torch.manual_seed(0)
    method = build_method("bridge", build_backbone(cfg.backbone), dict(cfg.method))
    from simxir.train.engine import train

    res = train(cfg, method, digits, build_augment(cfg.augment, digits.image_size, digits.mean, digits.std),
                tmp_path / "b")
    losses = [m["loss"] for m in res["epochs"]]
    assert all(torch.isfinite(torch.tensor(v)) for v in losses) and losses[-1] < 1e3
