"""YOLO building blocks and necks: shapes, the SPPF = SPP identity, FPN parity with torchvision."""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import pytest
import torch
from torch import nn

from cvzoo.models.detection.darknet import CSPDarknet, Darknet53, DarknetTiny
from cvzoo.models.detection.yolo_common import (
    C3,
    SPP,
    SPPF,
    Bottleneck,
    C2f,
    conv_bn_act,
    scale_depth,
    scale_width,
)
from cvzoo.models.necks import FeaturePyramidNetwork, PathAggregationNetwork, YoloV3FPN


def test_scaling_rules_match_the_published_layouts():
    # YOLOv5n/v8n: depth 0.33 turns (3, 6, 9) bottlenecks into (1, 2, 3); single blocks stay single.
    assert [scale_depth(n, 0.33) for n in (1, 3, 6, 9)] == [1, 1, 2, 3]
    assert [scale_depth(n, 1.33) for n in (3, 6, 9)] == [4, 8, 12]
    # YOLOv8m caps 1024 at 768 before the 0.75 multiple; v8x caps at 512 then 1.25.
    assert scale_width(1024, 0.75, 768) == 576
    assert scale_width(1024, 1.25, 512) == 640
    assert scale_width(64, 0.25) == 16


def test_sppf_pools_equal_spp_pools():
    # Three chained 5x5 stride-1 max pools see 5x5, 9x9 and 13x13 windows: SPPF == SPP(5, 9, 13).
    torch.manual_seed(0)
    x = torch.randn(2, 4, 17, 13)
    spp = SPP(4, 4, (5, 9, 13))
    chained = [x]
    pool = nn.MaxPool2d(5, 1, 2)
    for _ in range(3):
        chained.append(pool(chained[-1]))
    for direct, serial in zip(spp.pools, chained[1:]):
        torch.testing.assert_close(direct(x), serial, rtol=0, atol=0)
    sppf = SPPF(8, 6)
    assert sppf(torch.randn(1, 8, 10, 10)).shape == (1, 6, 10, 10)


def test_blocks_shapes_and_residual():
    x = torch.randn(2, 16, 8, 8)
    assert C3(16, 32, 2)(x).shape == (2, 32, 8, 8)
    c2f = C2f(16, 24, 3, shortcut=True)
    assert c2f(x).shape == (2, 24, 8, 8)
    # C2f concatenates both halves of the split plus every bottleneck output: (2 + n) * hidden channels.
    assert c2f.fuse.conv.in_channels == (2 + 3) * 12
    block = Bottleneck(16, 16, shortcut=True).eval()
    nn.init.zeros_(block.conv2.bn.weight)
    nn.init.zeros_(block.conv2.bn.bias)
    # A zeroed residual branch leaves x + SiLU(0) = x.
    torch.testing.assert_close(block(x), x)
    assert not Bottleneck(16, 32, shortcut=True).residual


@pytest.mark.parametrize(
    "backbone, strides, channels",
    [
        (partial(Darknet53, num_classes=0), (1, 2, 4, 8, 16, 32), (32, 64, 128, 256, 512, 1024)),
        (partial(DarknetTiny, num_classes=0), (1, 2, 4, 8, 16, 32), (16, 32, 64, 128, 256, 1024)),
        (partial(CSPDarknet, "c2f", 0.33, 0.25, 1024, (3, 6, 6, 3), 3), (2, 4, 8, 16, 32), (16, 32, 64, 128, 256)),
    ],
    ids=["darknet53", "darknet_tiny", "cspdarknet_c2f"],
)
def test_backbones_follow_feature_info(backbone, strides, channels):
    backbone = backbone()
    x = torch.randn(1, 3, 64, 64)
    features = backbone.eval().forward_features(x)
    assert [info.reduction for info in backbone.feature_info] == list(strides)
    assert [f.shape[1] for f in features] == list(channels)
    assert [64 // f.shape[-1] for f in features] == list(strides)


def test_fpn_matches_torchvision():
    from torchvision.ops import FeaturePyramidNetwork as TvFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    torch.manual_seed(0)
    ours = FeaturePyramidNetwork([8, 16, 32], 12, extra_block="p6p7")
    reference = TvFPN([8, 16, 32], 12, extra_blocks=LastLevelP6P7(12, 12))
    mapping = {}
    for i in range(3):
        for kind in ("weight", "bias"):
            mapping[f"inner_blocks.{i}.0.{kind}"] = f"laterals.{i}.{kind}"
            mapping[f"layer_blocks.{i}.0.{kind}"] = f"outputs.{i}.{kind}"
    for p in ("p6", "p7"):
        for kind in ("weight", "bias"):
            mapping[f"extra_blocks.{p}.{kind}"] = f"{p}.{kind}"
    state = ours.state_dict()
    reference.load_state_dict({key: state[ours_key] for key, ours_key in mapping.items()})
    features = [torch.randn(2, c, s, s) for c, s in ((8, 16), (16, 8), (32, 4))]
    expected = list(reference(OrderedDict((str(i), f) for i, f in enumerate(features))).values())
    got = ours(features)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    pooled = FeaturePyramidNetwork([8, 16, 32], 12, extra_block="pool")(features)
    assert [p.shape[-1] for p in pooled] == [16, 8, 4, 2]


def test_yolov3_fpn_channels_and_spp():
    conv = conv_bn_act
    features = [torch.randn(1, c, s, s) for c, s in ((32, 8), (64, 4), (128, 2))]
    plain = YoloV3FPN((32, 64, 128), (16, 32, 64), (5, 5, 5), conv=conv)
    assert [o.shape[1:] for o in plain(features)] == [(32, 8, 8), (64, 4, 4), (128, 2, 2)]
    with_spp = YoloV3FPN((32, 64, 128), (16, 32, 64), (5, 5, 5), conv=conv, spp=lambda i, o: SPP(i, o))
    # darknet's yolov3-spp.cfg: 1x1, 3x3, 1x1, SPP (+1x1 fuse of 4x the channels), 3x3, 1x1.
    top = with_spp.conv_sets[2]
    assert isinstance(top[3], SPP) and top[3].fuse.conv.in_channels == 4 * 64
    assert [o.shape for o in with_spp(features)] == [o.shape for o in plain(features)]


@pytest.mark.parametrize("lateral", [True, False])
def test_pan_shapes(lateral):
    features = [torch.randn(2, c, s, s) for c, s in ((16, 8), (32, 4), (64, 2))]
    pan = PathAggregationNetwork((16, 32, 64), (16, 32, 64), partial(C2f, shortcut=False), 1, conv_bn_act, lateral)
    assert [tuple(o.shape) for o in pan(features)] == [(2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    assert isinstance(pan.lateral5, nn.Identity) != lateral
