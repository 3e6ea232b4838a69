"""SE, CBAM and SRM against their defining equations, computed by hand on small tensors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cvzoo.layers.attention import (
    CBAM,
    ChannelAttention,
    SpatialAttention,
    SqueezeExcite,
    StyleRecalibration,
    create_attention,
)


def _set_conv(conv: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(conv.weight.shape))
        if conv.bias is not None:
            conv.bias.copy_(bias if bias is not None else torch.zeros_like(conv.bias))


def test_squeeze_excite_matches_its_equation():
    # Hu et al., 2018, Eq. 2-4: s = sigmoid(W2 relu(W1 mean(x))), y_c = s_c * x_c.
    se = SqueezeExcite(2, squeeze_channels=1)
    _set_conv(se.fc1, torch.tensor([[1.0, -1.0]]), torch.tensor([0.5]))
    _set_conv(se.fc2, torch.tensor([[2.0], [-1.0]]), torch.tensor([0.0, 1.0]))
    x = torch.tensor([[[[1.0, 3.0]], [[0.0, 2.0]]]])  # channel means 2 and 1
    hidden = max(2.0 - 1.0 + 0.5, 0.0)  # 1.5
    gates = torch.sigmoid(torch.tensor([2.0 * hidden, -hidden + 1.0]))
    expected = x * gates.reshape(1, 2, 1, 1)
    torch.testing.assert_close(se(x), expected)


def test_squeeze_excite_defaults_and_mobilenet_v3_gate():
    assert SqueezeExcite(64).fc1.out_channels == 4  # reduction 16 (Hu et al., Table 5)
    assert SqueezeExcite(8).fc1.out_channels == 1
    se = SqueezeExcite(4, squeeze_channels=8, gate_layer=nn.Hardsigmoid)
    for conv in (se.fc1, se.fc2):
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(se(x), x * 0.5)  # hardsigmoid(0) = 0.5


def test_channel_attention_uses_average_and_max_descriptors():
    # Woo et al., 2018, Eq. 2: M_c = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x))), one shared MLP.
    attention = ChannelAttention(2, reduction=2)
    _set_conv(attention.fc1, torch.tensor([[1.0, 1.0]]))
    _set_conv(attention.fc2, torch.tensor([[1.0], [-2.0]]))
    x = torch.tensor([[[[1.0, 3.0]], [[2.0, 4.0]]]])  # means 2, 3; maxima 3, 4
    mlp_avg = torch.tensor([5.0, -10.0])  # hidden relu(2 + 3) = 5
    mlp_max = torch.tensor([7.0, -14.0])  # hidden relu(3 + 4) = 7
    expected = x * torch.sigmoid(mlp_avg + mlp_max).reshape(1, 2, 1, 1)
    torch.testing.assert_close(attention(x), expected)


def test_spatial_attention_uses_channel_mean_and_max_maps():
    # Woo et al., 2018, Eq. 3 with a 1x1 kernel to keep the hand computation short.
    attention = SpatialAttention(kernel_size=1)
    _set_conv(attention.conv, torch.tensor([1.0, -0.5]), torch.tensor([0.25]))
    x = torch.tensor([[[[1.0, -2.0]], [[3.0, 0.0]]]])  # per-position mean 2, -1; max 3, 0
    gate = torch.sigmoid(torch.tensor([2.0 - 1.5 + 0.25, -1.0 - 0.0 + 0.25]))
    torch.testing.assert_close(attention(x), x * gate.reshape(1, 1, 1, 2))


def test_cbam_applies_channel_then_spatial_attention():
    torch.manual_seed(0)
    cbam = CBAM(16, reduction=4)
    x = torch.randn(2, 16, 6, 6)
    torch.testing.assert_close(cbam(x), cbam.spatial(cbam.channel(x)))
    assert cbam.spatial.conv.kernel_size == (7, 7)


def test_style_recalibration_matches_its_equations():
    # Lee et al., 2019, Eq. 1-5: t = (mean, std) per channel, z_c = w_c . t_c, g = sigmoid(BN(z)).
    srm = StyleRecalibration(2).eval()
    with torch.no_grad():
        srm.cfc.weight.copy_(torch.tensor([[[1.0, 2.0]], [[-1.0, 0.5]]]))
        srm.bn.running_mean.copy_(torch.tensor([0.5, 0.0]))
        srm.bn.running_var.copy_(torch.tensor([4.0, 1.0]))
        srm.bn.weight.copy_(torch.tensor([2.0, 1.0]))
        srm.bn.bias.copy_(torch.tensor([0.0, -1.0]))
    x = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]], [[0.0, 0.0], [4.0, 4.0]]]])
    mean = torch.tensor([2.0, 2.0])
    std = torch.sqrt(torch.tensor([1.0, 4.0]) + srm.eps)  # population variance
    z = torch.stack([1.0 * mean[0] + 2.0 * std[0], -1.0 * mean[1] + 0.5 * std[1]])
    normed = (z - torch.tensor([0.5, 0.0])) / torch.sqrt(torch.tensor([4.0, 1.0]) + srm.bn.eps)
    gate = torch.sigmoid(normed * torch.tensor([2.0, 1.0]) + torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(srm(x), x * gate.reshape(1, 2, 1, 1))


def test_style_recalibration_starts_at_half_gate_and_handles_1x1_maps():
    srm = StyleRecalibration(8).train()
    x = torch.randn(4, 8, 1, 1)  # a 1x1 map: zero variance, std = sqrt(eps), never NaN
    out = srm(x)
    torch.testing.assert_close(out, x * 0.5)  # zero-initialised cfc: gate sigmoid(beta = 0)
    out.sum().backward()
    assert srm.cfc.weight.grad is not None and torch.isfinite(srm.cfc.weight.grad).all()


@pytest.mark.parametrize("kind", ["se", "cbam", "srm"])
def test_create_attention_keeps_shape_and_passes_gradients(kind):
    torch.manual_seed(0)
    module = create_attention(kind, 32)
    x = torch.randn(2, 32, 7, 5, requires_grad=True)
    out = module(x)
    assert out.shape == x.shape
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.parameters())


def test_create_attention_rejects_unknown_kind():
    with pytest.raises(ValueError, match="unknown attention 'eca'; choose from cbam, se, srm"):
        create_attention("eca", 16)
