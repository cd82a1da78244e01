"""Feature extraction: batched output equals a direct forward pass, modes restored, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from simxir.errors import UserError
from simxir.eval.features import extract_features


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.bn(self.conv(x))).mean((2, 3))


class _Aug:
    """Stands in for simxir.augment.Augment: ``eval`` is the deterministic transform."""

    def eval(self, x):
        return (x.float() / 255.0 - 0.5) / 0.25


def test_batched_features_equal_direct_eval_forward():
    net = _Net()
    net.bn.running_mean.uniform_(-1, 1)
    net.bn.running_var.uniform_(0.5, 2)
    net.train()
    images = torch.randint(0, 256, (11, 3, 8, 8), dtype=torch.uint8)
    out = extract_features(net, images, _Aug(), batch_size=4)
    assert out.dtype == torch.float32 and out.device.type == "cpu" and out.shape == (11, 4)
    assert not out.requires_grad
    assert net.training, "the model's train mode must be restored"
    net.eval()
    with torch.no_grad():
        ref = net((images.float() / 255.0 - 0.5) / 0.25)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_callable_transform_and_default_transform():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()
    images = torch.randint(0, 256, (6, 3, 4, 4), dtype=torch.uint8)
    a = extract_features(net, images, lambda x: x.float() * 2, batch_size=5)
    torch.testing.assert_close(a, net(images.float() * 2).detach())
    b = extract_features(net, images, None, batch_size=2)
    torch.testing.assert_close(b, net(images.float() / 255).detach())
    assert not net.training


def test_bad_images_raise_user_error():
    net = nn.Flatten()
    with pytest.raises(UserError):
        extract_features(net, torch.zeros(3, 4, 4, dtype=torch.uint8), None)
    with pytest.raises(UserError):
        extract_features(net, torch.zeros(2, 3, 4, 4, dtype=torch.uint8), None, batch_size=0)


def test_extraction_in_channels_last_gives_the_model_its_layout_back():
    """On CUDA features are extracted in channels_last (here forced on the CPU): the same features,
    and every convolution weight in its own layout again afterwards, still trainable."""
    from simxir.eval.features import channels_last
    from simxir.models import build_backbone

    torch.manual_seed(0)
    model = build_backbone("resnet18-cifar").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = model(x)
    with channels_last(model, True) as cl:
        assert cl and model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())
    model.train()(x).sum().backward()                          # ordinary parameters: gradients flow
    assert model.conv1.weight.grad is not None
    with channels_last(torch.nn.Linear(3, 3), True) as cl:     # nothing to convert
        assert not cl
