"""Backbones: exact torchvision names/shapes written out from the architecture, dims, stems."""

from __future__ import annotations

import pytest
import torch

from simxir.errors import UserError
from simxir.models import build_backbone


def _bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def expected_resnet(blocks: tuple[int, ...], bottleneck: bool, stem_k: int) -> dict[str, tuple]:
    """torchvision's resnet state_dict (minus fc) written out from the paper's architecture."""
    exp: dict[str, tuple] = {"conv1.weight": (64, 3, stem_k, stem_k), **_bn("bn1", 64)}
    cin = 64
    for li, (n, width) in enumerate(zip(blocks, (64, 128, 256, 512)), start=1):
        out = width * 4 if bottleneck else width
        for b in range(n):
            p = f"layer{li}.{b}"
            if bottleneck:
                exp[f"{p}.conv1.weight"] = (width, cin, 1, 1)
                exp.update(_bn(f"{p}.bn1", width))
                exp[f"{p}.conv2.weight"] = (width, width, 3, 3)
                exp.update(_bn(f"{p}.bn2", width))
                exp[f"{p}.conv3.weight"] = (out, width, 1, 1)
                exp.update(_bn(f"{p}.bn3", out))
            else:
                exp[f"{p}.conv1.weight"] = (width, cin, 3, 3)
                exp.update(_bn(f"{p}.bn1", width))
                exp[f"{p}.conv2.weight"] = (width, width, 3, 3)
                exp.update(_bn(f"{p}.bn2", width))
            if b == 0 and (li > 1 or bottleneck):  # stride 2 or channel change
                exp[f"{p}.downsample.0.weight"] = (out, cin, 1, 1)
                exp.update(_bn(f"{p}.downsample.1", out))
            cin = out
    return exp


@pytest.mark.parametrize("name,blocks,bottleneck,dim", [
    ("resnet18", (2, 2, 2, 2), False, 512),
    ("resnet34", (3, 4, 6, 3), False, 512),
    ("resnet50", (3, 4, 6, 3), True, 2048),
])
@pytest.mark.parametrize("cifar", [False, True])
def test_resnet_state_dict_matches_torchvision_layout(name, blocks, bottleneck, dim, cifar):
    arch = name + ("-cifar" if cifar else "")
    m = build_backbone(arch)
    got = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    exp = expected_resnet(blocks, bottleneck, 3 if cifar else 7)
    assert list(got) == list(exp)  # same names in torchvision's registration order
    assert got == exp
    assert m.feature_dim == dim and m.arch == arch
    assert not any(k.startswith("fc.") for k in got)


def test_resnet18_param_count_equals_torchvision_minus_fc():
    # torchvision resnet18 has 11,689,512 params; fc is 512*1000+1000 = 513,000
    m = build_backbone("resnet18")
    assert sum(p.numel() for p in m.parameters()) == 11_689_512 - 513_000


def test_resnet50_param_count_equals_torchvision_minus_fc():
    # torchvision resnet50 has 25,557,032 params; fc is 2048*1000+1000
    m = build_backbone("resnet50")
    assert sum(p.numel() for p in m.parameters()) == 25_557_032 - 2_049_000


@pytest.mark.parametrize("arch,size,dim", [("resnet18", 64, 512), ("resnet18-cifar", 32, 512),
                                           ("resnet50-cifar", 16, 2048), ("convnet-small", 8, 128),
                                           ("convnet-small", 32, 128)])
def test_forward_output_dims(arch, size, dim):
    m = build_backbone(arch).eval()
    with torch.no_grad():
        y = m(torch.randn(2, 3, size, size))
    assert y.shape == (2, dim) and m.feature_dim == dim
    assert torch.isfinite(y).all()


def test_convnet_small_trains_on_8x8():
    m = build_backbone("convnet-small")
    y = m(torch.randn(4, 3, 8, 8))
    y.pow(2).mean().backward()
    assert all(p.grad is not None for p in m.parameters())


def test_cifar_stem_keeps_resolution_at_layer1_and_imagenet_stem_quarters_it():
    x = torch.randn(1, 3, 32, 32)
    cif, imn = build_backbone("resnet18-cifar").eval(), build_backbone("resnet18").eval()
    with torch.no_grad():
        assert cif.layer1(cif.forward_stem(x)).shape[-2:] == (32, 32)
        assert imn.layer1(imn.forward_stem(x)).shape[-2:] == (8, 8)
        assert cif.forward_maps(x).shape == (1, 512, 4, 4)


def test_zero_init_residual_and_torchvision_init():
    m = build_backbone("resnet50", zero_init_residual=True)
    assert all(m.get_submodule(f"layer{i}.0.bn3").weight.abs().sum() == 0 for i in range(1, 5))
    assert m.bn1.weight.eq(1).all() and m.layer1[0].bn1.weight.eq(1).all()
    b = build_backbone("resnet18", zero_init_residual=True)
    assert b.layer2[1].bn2.weight.abs().sum() == 0 and b.layer2[1].bn1.weight.eq(1).all()
    plain = build_backbone("resnet18")
    assert plain.layer2[1].bn2.weight.eq(1).all()
    # kaiming_normal_(fan_out, relu): std = sqrt(2 / (out_channels * k * k))
    w = build_backbone("resnet50").layer4[0].conv2.weight  # 512x512x3x3
    assert abs(w.std().item() - (2 / (512 * 9)) ** 0.5) / (2 / (512 * 9)) ** 0.5 < 0.02
    assert abs(w.mean().item()) < 1e-3


def test_unknown_backbone_is_user_error():
    with pytest.raises(UserError, match="backbone 'vit'"):
        build_backbone("vit")
    with pytest.raises(UserError):
        build_backbone("resnet19")
