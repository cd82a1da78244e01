"""The ViT backbone against a reference written out here (timm's names, softmax attention)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simxir.errors import UserError
from simxir.models import build_backbone
from simxir.models.vit import resample_pos_embed


def _layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def reference_vit(sd: dict, x: torch.Tensor, heads: int, patch: int, registers: int = 0) -> torch.Tensor:
    """All output tokens of a timm-named ViT state dict, from the formulas (float64)."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    n = x.shape[0]
    w = sd["patch_embed.proj.weight"]                        # (d, 3, p, p): a linear map of each patch
    d = w.shape[0]
    g = x.shape[-1] // patch
    patches = x.reshape(n, 3, g, patch, g, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, g * g, -1)
    t = patches @ w.reshape(d, -1).T + sd["patch_embed.proj.bias"]
    t = torch.cat([sd["cls_token"].expand(n, 1, d), t], dim=1) + sd["pos_embed"]
    if registers:
        t = torch.cat([t[:, :1], sd["reg_token"].expand(n, registers, d), t[:, 1:]], dim=1)
    blocks = sorted({int(k.split(".")[1]) for k in sd if k.startswith("blocks.")})
    for i in blocks:
        p = f"blocks.{i}."
        h = _layer_norm(t, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        qkv = h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = qkv.split(d, dim=-1)
        dh = d // heads
        out = []
        for j in range(heads):
            s = slice(j * dh, (j + 1) * dh)
            a = torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(dh), dim=-1)
            out.append(a @ v[..., s])
        a = torch.cat(out, dim=-1) @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        t = t + a * sd.get(p + "ls1.gamma", 1.0)
        h = _layer_norm(t, sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        m = _gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"]) @ sd[p + "mlp.fc2.weight"].T
        t = t + (m + sd[p + "mlp.fc2.bias"]) * sd.get(p + "ls2.gamma", 1.0)
    return _layer_norm(t, sd["norm.weight"], sd["norm.bias"])


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():          # not the init's near-zero tokens: every term matters
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.2))
    return model


@pytest.mark.parametrize("opts", [{}, {"registers": 2, "layer_scale": 0.1}])
def test_forward_equals_the_written_out_reference(opts):
    model = _randomized(build_backbone("vit-tiny-cifar", **opts)).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = model.tokens(x).double()
    ref = reference_vit(model.state_dict(), x, heads=3, patch=4, registers=opts.get("registers", 0))
    assert got.shape == (2, 1 + opts.get("registers", 0) + 64, 192)
    assert (got - ref).abs().max() < 1e-4 * ref.abs().max()
    reg = opts.get("registers", 0)
    for rep, expect in (("cls", ref[:, 0]), ("mean", ref[:, 1 + reg:].mean(1)),
                        ("cls+mean", torch.cat([ref[:, 0], ref[:, 1 + reg:].mean(1)], 1))):
        m = build_backbone("vit-tiny-cifar", representation=rep, **opts)
        m.load_state_dict(model.state_dict())
        with torch.no_grad():
            out = m.eval()(x).double()
        assert m.feature_dim == out.shape[1] == expect.shape[1]
        assert (out - expect).abs().max() < 1e-4 * expect.abs().max()


def test_sdpa_and_written_softmax_attention_agree():
    a = _randomized(build_backbone("vit-tiny-cifar")).eval()
    b = build_backbone("vit-tiny-cifar", attn="softmax").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-4, rtol=1e-4)


def test_timm_names_and_parameter_counts():
    """timm's vit_{tiny,small,base}_patch16_224 have 5,717,416 / 22,050,664 / 86,567,656 parameters
    with their 1000-class head (d * 1000 + 1000 of them)."""
    for name, with_head, d in (("vit-tiny", 5_717_416, 192), ("vit-small", 22_050_664, 384),
                               ("vit-base", 86_567_656, 768)):
        m = build_backbone(name)
        assert sum(p.numel() for p in m.parameters()) == with_head - (d * 1000 + 1000), name
    keys = set(build_backbone("vit-small", registers=4, layer_scale=1e-5).state_dict())
    assert {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "reg_token", "pos_embed",
            "norm.weight", "norm.bias"} <= keys
    assert {k[len("blocks.11."):] for k in keys if k.startswith("blocks.11.")} == {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
        "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
        "mlp.fc2.bias", "ls2.gamma"}
    assert build_backbone("vit-small").state_dict()["pos_embed"].shape == (1, 197, 384)


def test_position_embedding_resampling():
    pos = torch.randn(1, 1 + 64, 16)
    assert resample_pos_embed(pos, (8, 8), 1) is pos                  # the stored size: untouched
    const = torch.cat([torch.zeros(1, 1, 16), torch.full((1, 64, 16), 0.7)], dim=1)
    up = resample_pos_embed(const, (12, 12), 1)
    assert up.shape == (1, 145, 16) and torch.allclose(up[:, 1:], torch.full((1, 144, 16), 0.7))
    assert torch.equal(up[:, :1], const[:, :1])                       # the class slot is kept
    model = build_backbone("vit-tiny-cifar")
    with torch.no_grad():
        assert model(torch.randn(2, 3, 48, 48)).shape == (2, 192)     # another image size runs
    with pytest.raises(UserError, match="multiple of the patch size"):
        model(torch.randn(1, 3, 30, 30))


def test_bad_names_and_options_are_one_line():
    with pytest.raises(UserError, match="expected one of"):
        build_backbone("vit-huge")
    with pytest.raises(UserError, match="representation"):
        build_backbone("vit-tiny-cifar", representation="pool")
    with pytest.raises(UserError, match="only apply to ViT"):
        build_backbone("resnet18", registers=4)


def test_save_and_load_keep_the_vit_and_its_representation(tmp_path):
    from simxir.models import load_encoder, save_encoder

    m = _randomized(build_backbone("vit-tiny-cifar", registers=2, layer_scale=0.1, representation="cls+mean"))
    save_encoder(m, tmp_path / "vit.safetensors")
    back, report = load_encoder(tmp_path / "vit.safetensors")
    assert (back.num_registers, back.representation, back.feature_dim, report.arch) == (2, "cls+mean", 384,
                                                                                         "vit-tiny-cifar")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), back.eval()(x))
    # a ViT of another patch/image size is read from its tensors' shapes
    save_encoder(build_backbone("vit-small-p14-518"), tmp_path / "p14.safetensors")
    vit, report = load_encoder(tmp_path / "p14.safetensors")
    assert (report.arch, vit.patch_embed.patch_size, vit.pos_embed.shape[1]) == ("vit-small-p14-518", 14, 1 + 37 ** 2)


@pytest.mark.slow
def test_pretrain_then_simxir_on_a_vit_end_to_end(tmp_path):
    """SimSiam pretraining with backbone=vit-tiny-cifar records the representation; SimXIR
    fine-tunes the ViT (no BatchNorm: target_bn does not apply) and evaluates kNN + linear."""
    from simxir.eval.linear import LinearProbeConfig
    from simxir.finetune.run import build_finetune_config, run_finetune
    from simxir.methods import SimXIR
    from simxir.models import load_encoder
    from simxir.protocol import EvalProtocol
    from simxir.train.assemble import build_config
    from simxir.train.pretrain import run_pretrain

    rng = np.random.default_rng(0)
    data = tmp_path / "tiny.npz"       # 4 classes of 16 px images that differ in colour
    y_tr, y_te = np.arange(96) % 4, np.arange(32) % 4
    colour = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]])
    x_tr = np.clip(colour[y_tr][:, None, None] + rng.normal(0, 30, (96, 16, 16, 3)), 0, 255).astype(np.uint8)
    x_te = np.clip(colour[y_te][:, None, None] + rng.normal(0, 30, (32, 16, 16, 3)), 0, 255).astype(np.uint8)
    np.savez(data, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    cfg = build_config("simsiam", None, ["backbone=vit-tiny-cifar", "vit.representation=mean", "epochs=1",
                                         "batch_size=32", "tensorboard=false", "monitor.eval_size=32",
                                         "method.proj_hidden=64", "method.proj_dim=32", "method.pred_hidden=16"],
                       f"npz:{data}")
    res = run_pretrain(cfg, tmp_path / "pre")
    enc, report = load_encoder(res["encoder"])
    assert (report.arch, enc.representation) == ("vit-tiny-cifar", "mean")
    assert "representation: mean" in (tmp_path / "pre" / "config.yaml").read_text()
    assert not SimXIR(enc).target_bn_applies
    ft = build_finetune_config(None, ["epochs=1", "batch_size=32", "tensorboard=false", "vit.representation=cls+mean"],
                               f"npz:{data}")
    out = run_finetune(ft, res["encoder"], tmp_path / "ft",
                       protocol=EvalProtocol(knn_ks=(5,), linear_cfg=LinearProbeConfig(epochs=5)))
    for side in ("before", "after"):
        assert out[side]["knn"]["cosine"]["5"] > 60 and out[side]["linear"]["top1"] > 60   # colour classes
    tuned, _ = load_encoder(out["encoder"])
    assert tuned.representation == "cls+mean" and tuned.feature_dim == 384
    from simxir.dynamics.experiments import embeddings_experiment, load_embedding_inputs

    tr, ytr, te, yte, src = load_embedding_inputs(None, f"npz:{data}", out["encoder"])   # the dynamics lab
    assert tr.shape == (96, 384) and te.shape == (32, 384)
    lab = embeddings_experiment(tr, ytr, te, yte, src, None, k_graph=5, steps=3, every=1, k_eval=5)
    assert len(lab["knn_top1"]) == 4 and lab["knn_top1"][0] > 60


def test_vit_options_are_refused_on_other_backbones():
    from simxir.train.assemble import build_config
    from simxir.train.pretrain import run_pretrain

    cfg = build_config("simsiam", None, ["backbone=convnet-small", "vit.registers=4"], "digits")
    with pytest.raises(UserError, match="only apply to ViT"):
        run_pretrain(cfg, "/nonexistent/never-written")


@pytest.mark.parametrize("method", ["simsiam", "byol", "moco", "simclr", "barlow_twins", "vicreg", "bridge"])
def test_every_method_trains_a_vit(method):
    """Every pretraining method takes a ViT backbone: one SGD step moves the backbone, loss finite."""
    from simxir.methods import METHODS, build_method

    assert method in METHODS
    torch.manual_seed(0)
    m = build_method(method, build_backbone("vit-tiny-cifar"))
    x1, x2 = torch.randn(8, 3, 32, 32), torch.randn(8, 3, 32, 32)
    before = m.backbone.blocks[0].attn.qkv.weight.detach().clone()
    out = m([x1, x2])
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    assert not torch.equal(before, m.backbone.blocks[0].attn.qkv.weight)
