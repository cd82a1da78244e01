"""The papers' linear-evaluation protocol (--linear-protocol augmented) on a generated JPEG folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from stream_helpers import jpeg_folder

from simxir.augment import build_augment
from simxir.data import LoaderConfig, open_dataset
from simxir.models import build_backbone
from simxir.protocol import ProtocolConfig, build_classifier, protocol_config, protocol_probe

LINEAR_RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "linear"


def _setup(tmp_path):
    root = jpeg_folder(tmp_path / "d", 96, 24, classes=4, w=48, h=40)
    ds = open_dataset(f"folder:{root}", 32, LoaderConfig(stream="on", workers=0, stats_sample=8))
    aug = build_augment("simsiam-cifar", 32, ds.mean, ds.std)
    torch.manual_seed(0)
    return root, ds, aug, build_backbone("convnet-small")


@pytest.mark.slow
def test_protocol_probe_learns_colour_classes_with_the_backbone_frozen(tmp_path):
    _, ds, aug, bb = _setup(tmp_path)
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    cfg = ProtocolConfig(epochs=6, batch_size=32)
    res = protocol_probe(bb, ds, aug, cfg, tmp_path / "lin")
    assert res["protocol"] == "augmented" and res["bn"] is True
    assert res["top1"] > 90 and res["top5"] == 100.0          # 4 classes that differ in colour
    assert all(torch.equal(before[k], v) for k, v in bb.state_dict().items())   # frozen, BN stats too
    assert (tmp_path / "lin" / "linear-protocol.pt").is_file()
    # resuming the finished run loads the classifier and scores it again without training
    again = protocol_probe(bb, ds, aug, cfg, tmp_path / "lin", resume=True)
    assert again["top1"] == res["top1"]
    # chance without training: the test can fail
    untrained = protocol_probe(bb, ds, aug, ProtocolConfig(epochs=1, batch_size=32,
                                                           optim=dataclass_sgd(0.0)))
    assert untrained["top1"] < 60


def dataclass_sgd(lr):
    from simxir.train.config import OptimConfig

    return OptimConfig(name="sgd", lr=lr, scale_lr=False, weight_decay=0.0)


def test_classifier_is_bn_without_affine_then_linear():
    c = build_classifier(8, 3, bn=True, seed=0)
    assert isinstance(c[0], torch.nn.BatchNorm1d) and not c[0].affine and c[1].out_features == 3
    assert float(c[1].weight.detach().std()) == pytest.approx(0.01, rel=0.5) and not c[1].bias.any()
    assert len(build_classifier(8, 3, bn=False, seed=0)) == 1


def test_default_protocol_is_the_bridge_recipe():
    assert protocol_config(LINEAR_RECIPES / "bridge.yaml") == ProtocolConfig()


@pytest.mark.parametrize("name", ["bridge", "bridge-official", "simsiam"])
def test_every_linear_recipe_trains_an_epoch(name, tmp_path):
    """Each recipe's optimizer, schedule and classifier train an epoch (on a small batch) and score."""
    assert {p.stem for p in LINEAR_RECIPES.glob("*.yaml")} == {"bridge", "bridge-official", "simsiam"}
    cfg = protocol_config(LINEAR_RECIPES / f"{name}.yaml", {"epochs": 1, "batch_size": 32})
    _, ds, aug, bb = _setup(tmp_path)
    before = [p.detach().clone() for p in bb.parameters()]
    res = protocol_probe(bb, ds, aug, cfg)
    assert res["protocol"] == "augmented" and res["epochs"] == 1 and res["optim"] == cfg.optim.name
    assert 0.0 <= res["top1"] <= res["top5"] <= 100.0
    assert all(torch.equal(a, b) for a, b in zip(bb.parameters(), before))   # the backbone stays frozen


def test_cli_augmented_protocol_with_features_is_one_clear_error(tmp_path, monkeypatch, cli):
    monkeypatch.chdir(tmp_path)
    r = cli(["eval", "--features", "x.npz", "--linear-protocol", "augmented", "--json"])
    assert r.code == 2 and "--linear-protocol augmented" in r.error and "error" in r.json
    r = cli(["eval", "--features", "x.npz", "--linear-protocol", "nope"])
    assert r.code == 2 and "--linear-protocol" in r.error


@pytest.mark.slow
def test_finetune_reports_the_augmented_protocol_before_and_after(tmp_path):
    from simxir.finetune.run import build_finetune_config, run_finetune
    from simxir.models import save_encoder
    from simxir.protocol import EvalProtocol

    torch.manual_seed(0)
    save_encoder(build_backbone("convnet-small"), tmp_path / "enc.safetensors")
    (tmp_path / "lin.yaml").write_text("epochs: 2\nbatch_size: 128\n")
    cfg = build_finetune_config(None, ["epochs=1", "batch_size=256", "augment=tiny", "tensorboard=false"],
                                data="digits")
    res = run_finetune(cfg, tmp_path / "enc.safetensors", tmp_path / "run",
                       protocol=EvalProtocol(knn_ks=(5,), linear_protocol="augmented",
                                             linear_recipe=str(tmp_path / "lin.yaml")))
    for side in ("before", "after"):
        lin = res[side]["linear"]
        assert lin["protocol"] == "augmented" and lin["epochs"] == 2 and 0 <= lin["top1"] <= lin["top5"] <= 100
        assert (tmp_path / "run" / f"linear-{side}" / "linear-protocol.pt").is_file()
    assert "linear probe (augmented)" in (tmp_path / "run" / "report.md").read_text()


def test_the_official_protocol_reports_its_best_epoch_without_batchnorm(tmp_path):
    """bridge-official: no BN before the classifier; top-1 / top-5 are each the best over epochs (the
    official evaluate.py's best_acc), and the last epoch's top-1 is the 'last' protocol's result."""
    _, ds, aug, bb = _setup(tmp_path)
    official = protocol_config(LINEAR_RECIPES / "bridge-official.yaml", {"epochs": 3, "batch_size": 32})
    assert official.bn is False and official.report == "best"
    best = protocol_probe(bb, ds, aug, official)
    last = protocol_probe(bb, ds, aug, protocol_config(LINEAR_RECIPES / "bridge-official.yaml",
                                                      {"epochs": 3, "batch_size": 32, "report": "last"}))
    assert best["bn"] is False and len(best["epoch_top1"]) == 3
    assert best["top1"] == max(best["epoch_top1"]) and best["last_top1"] == best["epoch_top1"][-1]
    assert last["top1"] == pytest.approx(best["last_top1"]) and best["top1"] >= last["top1"]
    assert isinstance(build_classifier(8, 3, bn=False, seed=0)[0], torch.nn.Linear)
