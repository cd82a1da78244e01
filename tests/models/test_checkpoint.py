"""load_encoder / save_encoder / export_encoder on checkpoints laid out as each toolchain writes them.

Layouts are written out by hand here from the projects' source (not with simxir's own writers).
"""

from __future__ import annotations

import argparse
import functools

import pytest
import torch
from safetensors import safe_open

from simxir.errors import UserError
from simxir.models import FORMATS, build_backbone, export_encoder, load_encoder, save_encoder
from simxir.models.export import max_feature_difference
from simxir.models.vit import VisionTransformer


@functools.cache
def _template(arch: str) -> dict[str, torch.Tensor]:
    return build_backbone(arch).state_dict()


def random_state(arch: str, seed: int) -> dict[str, torch.Tensor]:
    """A backbone state_dict with distinct random values (so a wrong copy is detectable)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in _template(arch).items():
        if v.is_floating_point():
            t = torch.randn(v.shape, generator=g)
            out[k] = t.abs() + 0.1 if k.endswith("running_var") else t
        else:
            out[k] = torch.full_like(v, seed + 7)
    return out


@pytest.fixture(scope="module")
def sd18() -> dict[str, torch.Tensor]:
    return random_state("resnet18", 1)


@pytest.fixture(scope="module")
def other18() -> dict[str, torch.Tensor]:
    return random_state("resnet18", 2)  # the momentum / teacher copy


def states(arch: str) -> tuple[dict, dict]:
    """(online, momentum) states; most layout tests use the tiny convnet to stay fast."""
    return random_state(arch, 1), random_state(arch, 2)


def assert_loaded(model, sd):
    got = model.state_dict()
    assert set(got) == set(sd)
    for k, v in sd.items():
        assert torch.equal(got[k], v), k


def prefixed(prefix: str, sd: dict) -> dict:
    return {prefix + k: v for k, v in sd.items()}


# ------------------------------------------------------------------ torchvision / simxir

def test_torchvision_bare_and_wrapped_drop_fc(tmp_path, sd18):
    fc = {"fc.weight": torch.randn(1000, 512), "fc.bias": torch.randn(1000)}
    torch.save({**sd18, **fc}, tmp_path / "r18.pth")
    torch.save({"state_dict": {**sd18, **fc}}, tmp_path / "r18w.pth")
    for name in ("r18.pth", "r18w.pth"):
        model, rep = load_encoder(tmp_path / name)
        assert rep.format == "torchvision" and rep.arch == "resnet18" and model.arch == "resnet18"
        assert sorted(rep.dropped) == ["fc.bias", "fc.weight"]
        assert len(rep.loaded) == len(sd18) and rep.missing == []
        assert_loaded(model, sd18)
        assert "resnet18" in rep.summary() and "fc.* (2)" in rep.summary()


def test_ddp_module_prefix_plain_state_dict(tmp_path, sd18):
    torch.save({**prefixed("module.", sd18), "module.fc.weight": torch.randn(10, 512)},
               tmp_path / "ddp.pth")
    model, rep = load_encoder(tmp_path / "ddp.pth")
    assert rep.format == "torchvision" and rep.prefix == "module."
    assert rep.dropped == ["module.fc.weight"]
    assert_loaded(model, sd18)


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet18-cifar"])
def test_arch_is_inferred_from_tensors(tmp_path, arch):
    sd = build_backbone(arch).state_dict()
    torch.save(sd, tmp_path / "m.pth")
    model, rep = load_encoder(tmp_path / "m.pth")
    assert rep.arch == arch == model.arch
    assert model.feature_dim == (2048 if "50" in arch else 512)


def test_save_encoder_safetensors_roundtrip(tmp_path, sd18):
    m = build_backbone("resnet18-cifar")
    m.load_state_dict(random_state("resnet18-cifar", 3))
    p = tmp_path / "enc.safetensors"
    save_encoder(m, p)
    with safe_open(str(p), framework="pt") as f:
        assert f.metadata()["arch"] == "resnet18-cifar"
    loaded, rep = load_encoder(p)
    assert rep.format == "simxir" and loaded.arch == "resnet18-cifar"
    assert_loaded(loaded, m.state_dict())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(m.eval()(x), loaded.eval()(x))


def test_save_encoder_convnet_and_wrapped_model(tmp_path):
    m = build_backbone("convnet-small")

    class Wrapper(torch.nn.Module):  # what DDP / DataParallel look like: .module
        def __init__(self, inner):
            super().__init__()
            self.module = inner

    save_encoder(Wrapper(m), tmp_path / "c.safetensors")
    loaded, rep = load_encoder(tmp_path / "c.safetensors")
    assert rep.arch == "convnet-small"
    assert_loaded(loaded, m.state_dict())
    with pytest.raises(UserError, match="simxir backbone"):
        save_encoder(torch.nn.Linear(2, 2), tmp_path / "bad.safetensors")


# ------------------------------------------------------------------ strictness and errors

def test_missing_and_mismatched_tensors_fail_loudly(tmp_path, sd18):
    sd = dict(sd18)
    del sd["layer4.1.conv2.weight"]
    torch.save(sd, tmp_path / "miss.pth")
    with pytest.raises(UserError, match=r"missing 1 \(e\.g\. layer4\.1\.conv2\.weight"):
        load_encoder(tmp_path / "miss.pth")
    sd = dict(sd18)
    sd["layer2.0.bn1.weight"] = torch.zeros(7)
    torch.save(sd, tmp_path / "shape.pth")
    with pytest.raises(UserError, match="shape-mismatched 1 .*layer2.0.bn1.weight"):
        load_encoder(tmp_path / "shape.pth")


def test_backbone_override_is_checked(tmp_path, sd18):
    torch.save(sd18, tmp_path / "r18.pth")
    with pytest.raises(UserError, match="does not fit resnet34"):
        load_encoder(tmp_path / "r18.pth", backbone="resnet34")
    model, rep = load_encoder(tmp_path / "r18.pth", backbone="resnet18")
    assert rep.arch == "resnet18"
    with pytest.raises(UserError, match="backbone 'vgg'"):
        load_encoder(tmp_path / "r18.pth", backbone="vgg")


def test_unknown_depth_and_unknown_layout(tmp_path, sd18):
    sd = {k: v for k, v in sd18.items() if not k.startswith("layer3.1.")}
    torch.save(sd, tmp_path / "odd.pth")
    with pytest.raises(UserError, match="layer3 has 1 basic blocks"):
        load_encoder(tmp_path / "odd.pth")
    torch.save({"weights": {"a.b": torch.zeros(1)}}, tmp_path / "x.pth")
    with pytest.raises(UserError, match="no state_dict"):
        load_encoder(tmp_path / "x.pth")
    torch.save({"a.b": torch.zeros(1)}, tmp_path / "y.pth")
    with pytest.raises(UserError, match="unrecognised checkpoint layout"):
        load_encoder(tmp_path / "y.pth")
    with pytest.raises(UserError, match="no such checkpoint"):
        load_encoder(tmp_path / "absent.pth")
    with pytest.raises(UserError, match="--format 'keras'"):
        load_encoder(tmp_path / "y.pth", format="keras")


def test_absent_num_batches_tracked_is_tolerated_and_reported(tmp_path, sd18):
    sd = {k: v for k, v in sd18.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, tmp_path / "old.pth")
    model, rep = load_encoder(tmp_path / "old.pth")
    assert len(rep.missing) == sum(k.endswith("num_batches_tracked") for k in sd18)
    assert model.bn1.num_batches_tracked.item() == 0
    assert torch.equal(model.bn1.running_var, sd18["bn1.running_var"])


def test_pickled_checkpoint_needs_allow_pickle(tmp_path, sd18):
    ckpt = {"state_dict": prefixed("backbone.", sd18), "hyper_parameters": argparse.Namespace(lr=1),
            "pytorch-lightning_version": "2.1.0", "projector.0.weight": None}
    ckpt["state_dict"]["projector.0.weight"] = torch.randn(4, 512)
    torch.save(ckpt, tmp_path / "solo.ckpt")
    with pytest.raises(UserError, match="--allow-pickle"):
        load_encoder(tmp_path / "solo.ckpt")
    model, rep = load_encoder(tmp_path / "solo.ckpt", allow_pickle=True)
    assert rep.format == "solo-learn"
    assert_loaded(model, sd18)


# ------------------------------------------------------------------ toolchain layouts

def lightly_sequential_name(name: str) -> str:
    """torchvision name -> lightly's Sequential(ResNetGenerator children) name."""
    head, rest = name.split(".", 1)
    idx = {"conv1": "0", "bn1": "1", "layer1": "2", "layer2": "3", "layer3": "4", "layer4": "5"}
    return idx[head] + "." + rest.replace(".downsample.", ".shortcut.")


def make_layout(fmt: str, sd: dict, other: dict) -> tuple[dict, str]:
    """(checkpoint object, expected detected format) for one toolchain's layout."""
    head = {"0.weight": torch.randn(8, 512), "0.bias": torch.randn(8)}
    if fmt == "mmselfsup-0.x-backbone":
        return {"state_dict": dict(sd), "author": "MMSelfSup"}, "mmselfsup"
    if fmt == "mmselfsup-0.x-snapshot":  # MoCo: encoder_q = Sequential(backbone, neck)
        s = {**prefixed("encoder_q.0.", sd), **prefixed("encoder_q.1.mlp.", head),
             **prefixed("encoder_k.0.", other), **prefixed("encoder_k.1.mlp.", head),
             **prefixed("backbone.", sd), "queue": torch.randn(128, 16),
             "queue_ptr": torch.zeros(1, dtype=torch.long)}
        return {"meta": {"epoch": 200}, "state_dict": s}, "mmselfsup"
    if fmt == "mmselfsup-0.x-byol":  # online_net = Sequential(backbone, neck)
        s = {**prefixed("online_net.0.", sd), **prefixed("online_net.1.mlp.", head),
             **prefixed("target_net.0.", other), **prefixed("backbone.", sd)}
        return {"meta": {"epoch": 1}, "state_dict": s}, "mmselfsup"
    if fmt == "mmselfsup-1.x":
        s = {**prefixed("backbone.", sd), **prefixed("neck.mlp.", head),
             **prefixed("head.predictor.mlp.", head), **prefixed("target_net.module.0.", other),
             "target_net.steps": torch.tensor(5)}
        return {"meta": {"mmselfsup_version": "1.0.0rc6"}, "state_dict": s}, "mmselfsup"
    if fmt == "mmpretrain":
        s = {**prefixed("backbone.", sd), **prefixed("neck.mlp.", head),
             **prefixed("encoder_k.0.", other), "queue": torch.randn(4, 4)}
        return {"meta": {"mmpretrain_version": "1.2.0", "epoch": 3}, "state_dict": s}, "mmpretrain"
    if fmt == "solo-learn":
        s = {**prefixed("backbone.", sd), **prefixed("projector.", head),
             "classifier.weight": torch.randn(10, 512), "classifier.bias": torch.randn(10),
             **prefixed("momentum_backbone.", other), **prefixed("momentum_projector.", head)}
        return {"epoch": 3, "global_step": 10, "pytorch-lightning_version": "1.9.0",
                "state_dict": s}, "solo-learn"
    if fmt == "solo-learn-old":
        s = {**prefixed("encoder.", sd), **prefixed("projector.", head),
             **prefixed("momentum_encoder.", other)}
        return {"state_dict": s}, "solo-learn"
    if fmt == "lightly":  # imagenet benchmarks: backbone = torchvision resnet, fc = Identity
        s = {**prefixed("backbone.", sd), **prefixed("projection_head.layers.", head),
             **prefixed("teacher_backbone.", other),
             **prefixed("teacher_projection_head.layers.", head),
             "online_classifier.classification_head.weight": torch.randn(10, 512)}
        return {"epoch": 1, "state_dict": s}, "lightly"
    if fmt == "lightly-sequential":  # cifar10 benchmark: Sequential(*ResNetGenerator children)
        s = {"backbone." + lightly_sequential_name(k): v for k, v in sd.items()}
        s.update({"backbone_momentum." + lightly_sequential_name(k): v for k, v in other.items()})
        s.update(prefixed("projection_head.layers.", head))
        return {"state_dict": s}, "lightly"
    if fmt == "moco":
        s = {**prefixed("module.encoder_q.", sd), "module.encoder_q.fc.0.weight": torch.randn(8, 512),
             "module.encoder_q.fc.0.bias": torch.randn(8), "module.encoder_q.fc.2.weight":
             torch.randn(4, 8), **prefixed("module.encoder_k.", other),
             "module.queue": torch.randn(128, 16), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
        return {"epoch": 200, "arch": "resnet18", "state_dict": s,
                "optimizer": {"state": {}, "param_groups": []}}, "moco"
    if fmt == "mocov3":
        s = {**prefixed("module.base_encoder.", sd), **prefixed("module.base_encoder.fc.", head),
             **prefixed("module.momentum_encoder.", other), **prefixed("module.predictor.", head)}
        return {"epoch": 100, "arch": "resnet18", "state_dict": s}, "moco"
    if fmt == "simsiam":
        s = {**prefixed("module.encoder.", sd), **prefixed("module.encoder.fc.", head),
             **prefixed("module.predictor.", head)}
        return {"epoch": 100, "arch": "resnet18", "state_dict": s}, "simsiam"
    if fmt == "bridge":
        s = {**prefixed("module.backbone.", sd), **prefixed("module.projector.", head),
             "module.bn.running_mean": torch.randn(8)}
        return {"epoch": 100, "model": s, "optimizer": {"state": {}, "param_groups": []}}, "bridge"
    if fmt == "vissl":
        trunk = prefixed("_feature_blocks.", sd)
        heads = {"0.clf.0.weight": torch.randn(10, 512)}
        return {"phase_idx": 3, "iteration": 10, "classy_state_dict": {
            "base_model": {"model": {"trunk": trunk, "heads": heads}, "meta": {}}}}, "vissl"
    raise AssertionError(fmt)


LAYOUTS = ["mmselfsup-0.x-backbone", "mmselfsup-0.x-snapshot", "mmselfsup-0.x-byol",
           "mmselfsup-1.x", "mmpretrain", "solo-learn", "solo-learn-old", "lightly",
           "lightly-sequential", "moco", "mocov3", "simsiam", "bridge", "vissl"]


CASES = [(lay, "convnet-small") for lay in LAYOUTS if lay != "lightly-sequential"] + [
    ("lightly-sequential", "resnet18"), ("moco", "resnet18"), ("mmselfsup-0.x-snapshot", "resnet18"),
    ("solo-learn", "resnet18")]


@pytest.mark.parametrize("layout,arch", CASES)
def test_layouts_load_the_online_backbone(tmp_path, layout, arch):
    sd, other = states(arch)
    obj, expected_format = make_layout(layout, sd, other)
    torch.save(obj, tmp_path / "ckpt.pth")
    model, rep = load_encoder(tmp_path / "ckpt.pth")
    assert rep.format == expected_format
    assert rep.arch == arch
    assert_loaded(model, sd)  # the online copy, never the momentum/teacher one
    assert len(rep.loaded) == len(sd)
    momentum = ("encoder_k", "momentum", "teacher", "target_net", "backbone_momentum")
    assert not any(m in k for k in rep.loaded for m in momentum)
    n_total = len(obj.get("state_dict", obj.get("model", {}))) if layout != "vissl" else len(sd)
    assert len(rep.loaded) + len(rep.dropped) == n_total


def test_simxir_training_checkpoint_takes_online_backbone(tmp_path):
    sd, other = states("convnet-small")
    model_sd = {**prefixed("backbone.", sd), **prefixed("target_backbone.", other),
                "projector.0.weight": torch.randn(4, 128), "predictor.0.weight": torch.randn(4, 4)}
    torch.save({"model": model_sd, "probe": None, "optimizer": {"state": {}, "param_groups": []},
                "epoch": 2, "step": 8, "history": [{"epoch": 1, "loss": 0.5}],
                "config": {"epochs": 2}}, tmp_path / "checkpoint.pt")
    model, rep = load_encoder(tmp_path / "checkpoint.pt")
    assert rep.format == "simxir" and rep.arch == "convnet-small"
    assert_loaded(model, sd)
    assert len(rep.dropped) == len(other) + 2


def test_bridge_bare_resnet50_pth_reads_as_torchvision_or_forced_bridge(tmp_path, sd18):
    torch.save(sd18, tmp_path / "resnet50.pth")  # model.module.backbone.state_dict()
    assert load_encoder(tmp_path / "resnet50.pth")[1].format == "torchvision"
    model, rep = load_encoder(tmp_path / "resnet50.pth", format="bridge")
    assert rep.format == "bridge"
    assert_loaded(model, sd18)


def test_mmselfsup_snapshot_copies_must_agree(tmp_path):
    obj, _ = make_layout("mmselfsup-0.x-snapshot", *states("convnet-small"))
    obj["state_dict"]["encoder_q.0.features.3.weight"] = torch.zeros(64, 32, 3, 3)
    torch.save(obj, tmp_path / "bad.pth")
    with pytest.raises(UserError, match="disagree.*features.3.weight"):
        load_encoder(tmp_path / "bad.pth")


def test_solo_learn_cifar_stem_keeps_its_padding(tmp_path):
    sd = random_state("resnet18-cifar", 4)
    torch.save({"state_dict": {**prefixed("backbone.", sd), "classifier.weight": torch.randn(10, 512)}},
               tmp_path / "solo.ckpt")
    model, rep = load_encoder(tmp_path / "solo.ckpt")
    assert rep.arch == "resnet18-cifar" and model.conv1.padding == (2, 2)
    assert model.conv1(torch.randn(1, 3, 8, 8)).shape[-2:] == (10, 10)  # padding 2: 8 -> 10
    save_encoder(model, tmp_path / "s.safetensors")  # the padding survives our own format
    assert load_encoder(tmp_path / "s.safetensors")[0].conv1.padding == (2, 2)


def test_lightly_split_batchnorm_stats_are_averaged(tmp_path, sd18, other18):
    obj, _ = make_layout("lightly-sequential", sd18, other18)
    s = obj["state_dict"]
    a, b = torch.randn(64), torch.randn(64)
    s["backbone.1.running_mean"] = torch.cat([a, b])  # SplitBatchNorm, num_splits=2
    torch.save(obj, tmp_path / "split.ckpt")
    model, rep = load_encoder(tmp_path / "split.ckpt")
    assert torch.allclose(model.bn1.running_mean, (a + b) / 2)
    assert any("SplitBatchNorm" in n for n in rep.notes)


def test_format_override(tmp_path):
    sd, other = states("convnet-small")
    obj, _ = make_layout("solo-learn", sd, other)
    torch.save(obj, tmp_path / "solo.ckpt")
    model, rep = load_encoder(tmp_path / "solo.ckpt", format="mmselfsup")
    assert rep.format == "mmselfsup"
    assert_loaded(model, sd)
    with pytest.raises(UserError, match="--format moco: no backbone keys with prefix"):
        load_encoder(tmp_path / "solo.ckpt", format="moco")


def test_prefix_is_stripped_once_not_replaced(tmp_path, sd18):
    # a naive .replace("backbone.", "") would also rewrite these keys; removeprefix must not
    s = {**prefixed("backbone.", sd18), "projector.backbone.weight": torch.randn(3)}
    torch.save({"state_dict": s}, tmp_path / "p.ckpt")
    model, rep = load_encoder(tmp_path / "p.ckpt")
    assert rep.dropped == ["projector.backbone.weight"]
    s2 = {**prefixed("backbone.", sd18), "backbone.backbone.extra": torch.randn(3)}
    torch.save({"state_dict": s2}, tmp_path / "q.ckpt")
    with pytest.raises(UserError, match="unexpected 1 .*backbone.extra"):
        load_encoder(tmp_path / "q.ckpt")


# ------------------------------------------------------------------ export

VIT_FORMATS = ("dino", "ibot", "mae", "dinov2", "timm")
ROUNDTRIPS = [(f, "convnet-small") for f in FORMATS if f not in (*VIT_FORMATS, "transformers")] + [
    (f, "resnet18-cifar") for f in ("solo-learn", "moco", "vissl", "lightly")] + [
    (f, "vit-tiny-cifar") for f in (*VIT_FORMATS, "simxir")] + [
    ("transformers", "vit-tiny-cifar"), ("transformers", "resnet18")]     # folders (tests/models/test_transformers.py)


def test_vit_layouts_and_backbone_layouts_do_not_mix(tmp_path):
    with pytest.raises(UserError, match="--format timm: a ViT layout"):
        export_encoder(build_backbone("convnet-small"), tmp_path / "a.pth", "timm")
    with pytest.raises(UserError, match="--format simsiam: a ResNet/ConvNet layout"):
        export_encoder(build_backbone("vit-tiny-cifar"), tmp_path / "b.pth", "simsiam")


def test_moco_holds_mocov3_vits_with_their_12_heads(tmp_path):
    m = VisionTransformer(size="tiny", patch=4, img_size=32, heads=12, arch="vit-tiny-cifar")
    export_encoder(m, tmp_path / "v3.pth", "moco")
    obj = torch.load(tmp_path / "v3.pth", weights_only=True)
    assert obj["arch"] == "vit_tiny_cifar" and "module.base_encoder.blocks.0.attn.qkv.weight" in obj["state_dict"]
    back, rep = load_encoder(tmp_path / "v3.pth")
    assert (rep.format, back.heads) == ("moco", 12)
    assert any("12 attention heads" in n for n in rep.notes)
    assert max_feature_difference(m, back) == 0.0


@pytest.mark.parametrize("fmt,arch", ROUNDTRIPS)
def test_export_roundtrip_every_format(tmp_path, fmt, arch):
    m = build_backbone(arch)
    if arch.startswith("vit"):
        g = torch.Generator().manual_seed(5)
        m.load_state_dict({k: torch.randn(v.shape, generator=g) for k, v in m.state_dict().items()})
    else:
        m.load_state_dict(random_state(arch, 5))
    if fmt == "solo-learn" and arch.endswith("-cifar"):
        m.conv1.padding = (2, 2)   # solo-learn's own CIFAR stem (padding 1 cannot go there)
    out = tmp_path / ("e.safetensors" if fmt == "simxir" else "e" if fmt == "transformers" else "e.pth")
    assert export_encoder(m, out, fmt) == fmt
    loaded, rep = load_encoder(out)
    assert rep.format == fmt and rep.arch == arch and \
        rep.dropped == (["mask_token"] if fmt == "dinov2" else ["embeddings.mask_token"] if fmt == "transformers" and
                        "dinov2" in (out / "config.json").read_text() else [])
    assert_loaded(loaded, m.state_dict())


def test_export_layouts_are_what_the_toolchains_read(tmp_path):
    m = build_backbone("resnet18-cifar")
    export_encoder(m, tmp_path / "moco.pth", "moco")
    obj = torch.load(tmp_path / "moco.pth", weights_only=True)
    assert obj["arch"] == "resnet18"  # torchvision's name for main_lincls.py
    assert all(k.startswith("module.encoder_q.") for k in obj["state_dict"])
    assert "module.encoder_q.layer4.1.bn2.running_var" in obj["state_dict"]
    solo = build_backbone("resnet18-cifar")
    solo.conv1.padding = (2, 2)
    export_encoder(solo, tmp_path / "solo.ckpt", "solo-learn")
    obj = torch.load(tmp_path / "solo.ckpt", weights_only=True)
    assert "backbone.conv1.weight" in obj["state_dict"]
    export_encoder(m, tmp_path / "mm.pth", "mmselfsup")
    obj = torch.load(tmp_path / "mm.pth", weights_only=True)
    assert obj["author"] == "MMSelfSup" and "conv1.weight" in obj["state_dict"]
    export_encoder(m, tmp_path / "v.torch", "vissl")
    obj = torch.load(tmp_path / "v.torch", weights_only=True)
    trunk = obj["classy_state_dict"]["base_model"]["model"]["trunk"]
    assert "_feature_blocks.layer1.0.conv1.weight" in trunk
    export_encoder(m, tmp_path / "tv.pth", "torchvision")
    obj = torch.load(tmp_path / "tv.pth", weights_only=True)
    assert set(obj) == set(m.state_dict())


@pytest.mark.parametrize("layout,arch", [
    ("solo-learn", "convnet-small"), ("mmselfsup-0.x-snapshot", "convnet-small"),
    ("vissl", "convnet-small"), ("moco", "convnet-small"), ("lightly-sequential", "resnet18")])
def test_export_into_template_replaces_only_the_online_backbone(tmp_path, layout, arch):
    obj, fmt = make_layout(layout, *states(arch))
    torch.save(obj, tmp_path / "orig.pth")
    new = random_state(arch, 9)
    m = build_backbone(arch)
    m.load_state_dict(new)
    assert export_encoder(m, tmp_path / "new.pth", fmt, template=tmp_path / "orig.pth") == fmt
    loaded, rep = load_encoder(tmp_path / "new.pth")
    assert rep.format == fmt
    assert_loaded(loaded, new)
    before = torch.load(tmp_path / "orig.pth", weights_only=True)
    after = torch.load(tmp_path / "new.pth", weights_only=True)
    assert set(after) == set(before)
    if layout != "vissl":
        key = "state_dict"
        changed = {k for k in before[key] if not torch.equal(before[key][k], after[key][k])}
        assert changed and all(k in rep.dropped or k in (rep.prefix + n for n in rep.loaded)
                               or k.startswith("encoder_q.0.") or k.startswith("backbone.")
                               for k in changed)
        kept = [k for k in before[key] if k not in changed]
        assert any("momentum" in k or "encoder_k" in k for k in kept)


def test_export_to_solo_learn_keeps_the_features_or_refuses(tmp_path):
    from simxir.models import build_backbone, export_encoder, load_encoder
    from simxir.models.export import max_feature_difference, verify_export

    ours = build_backbone("resnet18-cifar")            # simxir's CIFAR stem: conv1 padding 1
    with pytest.raises(UserError, match="padding 1.*padding 2"):
        export_encoder(ours, tmp_path / "solo.ckpt", "solo-learn")
    assert not (tmp_path / "solo.ckpt").exists()
    export_encoder(ours, tmp_path / "tv.pth", "torchvision")
    _, diff = verify_export(ours, tmp_path / "tv.pth", "torchvision")
    assert diff == 0.0
    solo = build_backbone("resnet18-cifar")
    solo.conv1.padding = (2, 2)                        # an encoder that came from solo-learn
    export_encoder(solo, tmp_path / "solo.ckpt", "solo-learn")
    back, _ = load_encoder(tmp_path / "solo.ckpt")
    assert back.conv1.padding == (2, 2) and max_feature_difference(solo, back) == 0.0
    # the check compares features, not only tensors: same weights under another padding differ
    shifted, _ = load_encoder(tmp_path / "solo.ckpt")
    shifted.conv1.padding = (1, 1)
    assert max_feature_difference(solo, shifted) > 1e-3
    with pytest.raises(UserError, match="padding 2.*padding 1"):
        export_encoder(solo, tmp_path / "tv2.pth", "torchvision")
