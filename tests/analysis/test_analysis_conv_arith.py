"""Convolution arithmetic against real torch layers and the notes' worked examples."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from cvzoo.analysis import (
    ConvArithmeticError,
    compare_conv_costs,
    conv_output_size,
    conv_params_flops,
    conv_transpose_output_size,
    count_flops,
    hdc_check,
    pool_output_size,
    receptive_field,
)


def _torch_size(layer: nn.Module, size: int) -> int | None:
    try:
        return layer(torch.zeros(1, 1, size)).shape[-1]
    except RuntimeError:
        return None


def _ours(fn, *args) -> int | None:
    try:
        return fn(*args)
    except ConvArithmeticError:
        return None


def test_conv_output_size_matches_torch():
    rng = random.Random(0)
    for _ in range(200):
        size, k, s, p, d = rng.randint(1, 40), rng.randint(1, 7), rng.randint(1, 4), rng.randint(0, 3), rng.randint(1, 3)
        assert _ours(conv_output_size, size, k, s, p, d) == _torch_size(nn.Conv1d(1, 1, k, s, p, d), size)


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_output_size_matches_torch(ceil_mode):
    rng = random.Random(1)
    checked = 0
    for _ in range(200):
        size, k, s, d = rng.randint(1, 30), rng.randint(1, 6), rng.randint(1, 4), rng.randint(1, 3)
        p = rng.randint(0, k // 2)
        ref = _torch_size(nn.MaxPool1d(k, s, p, d, ceil_mode=ceil_mode), size)
        assert _ours(pool_output_size, size, k, s, p, d, ceil_mode) == ref, (size, k, s, p, d)
        ref_avg = _torch_size(nn.AvgPool1d(k, s, p, ceil_mode=ceil_mode), size)
        assert _ours(pool_output_size, size, k, s, p, 1, ceil_mode) == ref_avg, (size, k, s, p)
        checked += ref is not None
    assert checked > 150


def test_ceil_mode_edge_rules():
    # 6 -> ceil((6 - 2) / 2) + 1 = 3 windows; the third starts at 4, inside the input: kept.
    assert pool_output_size(6, 3, 2, ceil_mode=True) == 3 == nn.MaxPool2d(3, 2, ceil_mode=True)(
        torch.zeros(1, 1, 6, 6)).shape[-1]
    # 5 with kernel 2, stride 2, padding 1: a fourth window would start in the right padding: dropped.
    assert pool_output_size(5, 2, 2, 1, ceil_mode=True) == 3
    assert pool_output_size(5, 2, 2, 1, ceil_mode=False) == 3
    assert pool_output_size(112, 3, 2, 1) == 56  # ResNet stem
    assert pool_output_size(55, 3, 2) == 27  # AlexNet
    with pytest.raises(ConvArithmeticError, match="half the kernel"):
        pool_output_size(10, 3, 1, 2)
    with pytest.raises(ConvArithmeticError, match="does not fit"):
        conv_output_size(3, 5)
    with pytest.raises(ConvArithmeticError, match="stride"):
        conv_output_size(10, 3, stride=0)


def test_conv_transpose_output_size_matches_torch():
    rng = random.Random(2)
    for _ in range(300):
        size, k, s, p, d = rng.randint(1, 20), rng.randint(1, 6), rng.randint(1, 4), rng.randint(0, 3), rng.randint(1, 3)
        op = rng.randint(0, max(s, d) - 1)
        layer = nn.ConvTranspose1d(1, 1, k, s, p, output_padding=op, dilation=d)
        assert _ours(conv_transpose_output_size, size, k, s, p, op, d) == _torch_size(layer, size)
    with pytest.raises(ConvArithmeticError, match="output_padding"):
        conv_transpose_output_size(4, 3, stride=2, output_padding=2)


def test_receptive_field_worked_examples():
    assert receptive_field([3, 3]).size == 5  # VGG: two 3x3 convs see 5x5 ...
    assert receptive_field([3, 3, 3]).size == 7  # ... three see 7x7, with fewer weights than one 7x7
    stem = receptive_field([(7, 2), (3, 2)])  # ResNet stem: 7x7/2 conv + 3x3/2 max pool
    assert (stem.size, stem.jump) == (11, 4)
    alexnet = [(11, 4), (3, 2), (5, 1), (3, 2), (3, 1), (3, 1), (3, 1), (3, 2)]
    field = receptive_field(alexnet)
    assert (field.size, field.jump) == (195, 32)
    assert field.sizes == (11, 19, 51, 67, 99, 131, 163, 195)


def test_receptive_field_dilation_and_centre():
    assert receptive_field([(3, 1, 2)]).size == 5  # k_eff = d (k - 1) + 1
    assert receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 5)]).size == 17  # HDC [1, 2, 5]
    # "same"-padded 3x3 convs keep the first unit centred on pixel 0; a valid 3x3 conv moves it to 1.
    assert receptive_field([(3, 1, 1, 1), (3, 1, 1, 1)]).start == 0
    assert receptive_field([(3, 1, 1, 0), (2, 2, 1, 0)]).start == 1.5
    with pytest.raises(ConvArithmeticError, match="layer 1"):
        receptive_field([3, (3, 0)])


def test_hdc_rule():
    ok = hdc_check([1, 2, 5])
    assert ok.ok and ok.m2 == 2 and ok.max_distances == (1, 2, 5)
    bad = hdc_check([1, 2, 9])
    assert not bad.ok and bad.m2 == 5 and "M_2 = 5" in bad.reasons[0]
    gridded = hdc_check([2, 4, 8])
    assert not gridded.ok and gridded.common_factor == 2 and any("common factor" in r for r in gridded.reasons)
    assert hdc_check([1, 2, 3]).ok
    assert hdc_check([1, 2, 9], kernel_size=5).ok  # a larger kernel tolerates a larger gap
    assert not hdc_check([2]).ok and hdc_check([1]).ok


@pytest.mark.parametrize("groups", [1, 4, 16])
@pytest.mark.parametrize("bias", [False, True])
def test_conv_cost_matches_torch(groups, bias):
    conv = nn.Conv2d(32, 64, 3, padding=1, groups=groups, bias=bias)
    cost = conv_params_flops(32, 64, 3, groups, 14, 14, bias)
    assert cost.params == sum(p.numel() for p in conv.parameters())
    assert cost.macs == count_flops(conv, (32, 14, 14)).macs


def test_mobilenet_ratio():
    for n, k in [(64, 3), (256, 3), (128, 5)]:
        costs = compare_conv_costs(32, n, k, 28, 28, groups=4)
        ratio = costs["depthwise_separable"].macs / costs["standard"].macs
        assert ratio == pytest.approx(1 / n + 1 / k**2, rel=1e-12)
        assert costs["grouped"].macs * 4 == costs["standard"].macs
        separable = nn.Sequential(nn.Conv2d(32, 32, k, padding=k // 2, groups=32, bias=False), nn.Conv2d(32, n, 1, bias=False))
        assert costs["depthwise_separable"].params == sum(p.numel() for p in separable.parameters())
    with pytest.raises(ConvArithmeticError, match="groups"):
        conv_params_flops(30, 64, 3, groups=4)
