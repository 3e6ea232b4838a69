"""Conv-BN fusion and kernel helpers: the fused conv computes what the branches compute in eval mode."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cvzoo.layers.reparam import (
    fuse_conv_bn,
    fuse_conv_bn_weights,
    identity_kernel,
    pad_kernel,
    reparameterize,
)


def _random_bn(channels: int, seed: int = 0, affine: bool = True) -> nn.BatchNorm2d:
    generator = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels, eps=1e-3, affine=affine)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(channels, generator=generator))
        bn.running_var.copy_(torch.rand(channels, generator=generator) + 0.2)
        if affine:
            bn.weight.copy_(torch.randn(channels, generator=generator))
            bn.bias.copy_(torch.randn(channels, generator=generator))
    return bn.eval()


@pytest.mark.parametrize(
    ("kernel_size", "stride", "groups", "bias", "affine"),
    [(3, 1, 1, False, True), (1, 2, 1, True, True), (3, 2, 4, False, True), (5, 1, 8, True, False)],
)
def test_fuse_conv_bn_equals_conv_then_bn(kernel_size, stride, groups, bias, affine):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, kernel_size, stride, kernel_size // 2, groups=groups, bias=bias)
    bn = _random_bn(16, affine=affine)
    x = torch.randn(2, 8, 11, 11)
    fused = fuse_conv_bn(conv, bn)
    assert fused.bias is not None and fused.groups == groups and fused.stride == (stride, stride)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_fuse_conv_bn_weights_by_hand():
    # One channel: y = (w * x + b - mean) / sqrt(var + eps) * gamma + beta.
    bn = nn.BatchNorm2d(1, eps=0.0).eval()
    with torch.no_grad():
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
    weight, bias = fuse_conv_bn_weights(torch.full((1, 1, 1, 1), 2.0), torch.tensor([1.0]), bn)
    assert weight.item() == pytest.approx(2.0 * 3.0 / 2.0)
    assert bias.item() == pytest.approx(0.5 + (1.0 - 1.0) * 3.0 / 2.0)


def test_pad_kernel_centres_a_1x1_kernel():
    kernel = torch.arange(1.0, 5.0).reshape(4, 1, 1, 1)
    padded = pad_kernel(kernel, 3)
    assert padded.shape == (4, 1, 3, 3)
    assert torch.equal(padded[:, :, 1, 1], kernel[:, :, 0, 0])
    assert padded.sum() == kernel.sum()
    x = torch.randn(1, 1, 6, 6)
    torch.testing.assert_close(F.conv2d(x, padded, padding=1), F.conv2d(x, kernel))
    with pytest.raises(ValueError, match="cannot centre"):
        pad_kernel(torch.zeros(1, 1, 2, 2), 3)


@pytest.mark.parametrize(("groups", "kernel_size"), [(1, 3), (4, 3), (8, 1), (2, 5)])
def test_identity_kernel_reproduces_the_input(groups, kernel_size):
    x = torch.randn(2, 8, 7, 7)
    kernel = identity_kernel(8, groups, kernel_size)
    assert kernel.shape == (8, 8 // groups, kernel_size, kernel_size)
    torch.testing.assert_close(F.conv2d(x, kernel, padding=kernel_size // 2, groups=groups), x, rtol=0, atol=0)


def test_reparameterize_calls_every_submodule_once():
    calls = []

    class Fusable(nn.Module):
        def reparameterize(self) -> None:
            calls.append(self)

    model = nn.Sequential(Fusable(), nn.Sequential(nn.ReLU(), Fusable()))
    assert reparameterize(model) is model
    assert calls == [model[0], model[1][1]]


@pytest.mark.parametrize("name", ["yolov8n", "mobilenet_v3_small"])
def test_fuse_batchnorm_keeps_eval_outputs_and_removes_the_norms(name):
    from cvzoo.layers.reparam import fuse_batchnorm
    from cvzoo.models import create_model

    torch.manual_seed(0)
    model = create_model(name, num_classes=5).eval()
    for module in model.modules():  # non-trivial statistics, so a wrong fold would show
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = model(x)
        before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        folded = fuse_batchnorm(model)
        after = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
        got = model(x)
    assert folded > 0 and after == before - folded
    from torch.utils._pytree import tree_leaves

    pairs = list(zip(tree_leaves(expected), tree_leaves(got)))
    assert pairs
    for a, b in pairs:
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_prepare_for_inference_keeps_outputs_folds_bn_and_goes_channels_last():
    from cvzoo.layers.reparam import prepare_for_inference

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 1))
    model[1].running_mean.uniform_(-1, 1)
    model[1].running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(2, 3, 12, 10)
    expected = model(x)
    assert prepare_for_inference(model, "cpu") is model
    assert isinstance(model[1], nn.Identity)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
