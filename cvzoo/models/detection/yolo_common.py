"""Building blocks of the YOLO family: Conv-BN-act, the residual bottleneck, the CSP blocks C3 and C2f,
SPP and SPPF, the anchor-based prediction head and the depth/width scaling rules.

Every convolution is ``Conv2d(bias=False) -> BatchNorm2d(eps=1e-3, momentum=0.03) -> activation``: LeakyReLU
(0.1) in Darknet / YOLOv3 (Redmon & Farhadi 2018), SiLU from YOLOv5 on. The BatchNorm settings are the
YOLOv5/v8 training defaults.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from cvzoo.layers import make_divisible

ActLayer = Callable[..., nn.Module]
LEAKY_RELU: ActLayer = partial(nn.LeakyReLU, 0.1)


def yolo_batch_norm(num_features: int) -> nn.BatchNorm2d:
    """BatchNorm with the YOLOv5/v8 settings (a slower running average than PyTorch's 0.1)."""
    return nn.BatchNorm2d(num_features, eps=1e-3, momentum=0.03)


class ConvBnAct(nn.Sequential):
    """The YOLO convolution unit ``conv -> bn -> act`` (children named like ``cvzoo.layers.ConvNormAct``).

    ``padding`` defaults to "same" (``kernel_size // 2``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int | None = None,
        act_layer: ActLayer = nn.SiLU,
    ) -> None:
        padding = kernel_size // 2 if padding is None else padding
        super().__init__(OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False),
            bn=yolo_batch_norm(out_channels),
            act=act_layer(inplace=True),
        ))
        self.in_channels, self.out_channels = in_channels, out_channels


def conv_bn_act(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    stride: int = 1,
    padding: int | None = None,
    act_layer: ActLayer = nn.SiLU,
) -> ConvBnAct:
    """Factory form of :class:`ConvBnAct` (the ``conv`` argument the necks take)."""
    return ConvBnAct(in_channels, out_channels, kernel_size, stride, padding, act_layer)


def scale_depth(num_blocks: int, depth_multiple: float) -> int:
    """Blocks of a stage after the depth multiple (YOLOv5/v8 compound scaling); single blocks stay single."""
    return max(round(num_blocks * depth_multiple), 1) if num_blocks > 1 else num_blocks


def scale_width(channels: int, width_multiple: float, max_channels: int | None = None) -> int:
    """Channels after the width multiple, capped at ``max_channels`` first (YOLOv8), a multiple of 8."""
    if max_channels is not None:
        channels = min(channels, max_channels)
    return make_divisible(channels * width_multiple, 8)


class Bottleneck(nn.Module):
    """Two convolutions with an optional residual connection (He et al. 2016).

    Darknet-53's residual unit is ``Bottleneck(c, c, kernel_sizes=(1, 3), expansion=0.5)`` (a 1x1
    squeeze to ``c / 2`` then a 3x3 back to ``c``); C3 uses ``(1, 3)`` and C2f ``(3, 3)`` with expansion 1.
    The shortcut is only added when the input and output channels agree.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        shortcut: bool = True,
        kernel_sizes: tuple[int, int] = (1, 3),
        expansion: float = 0.5,
        act_layer: ActLayer = nn.SiLU,
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = conv_bn_act(in_channels, hidden, kernel_sizes[0], act_layer=act_layer)
        self.conv2 = conv_bn_act(hidden, out_channels, kernel_sizes[1], act_layer=act_layer)
        self.residual = shortcut and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.residual else y


class C3(nn.Module):
    """CSP bottleneck with three convolutions, the YOLOv5 block (CSPNet, Wang et al. 2020).

    The input is split by two 1x1 convolutions into a path through ``num_blocks`` bottlenecks and a
    shortcut path; concatenating both and fusing them with a third 1x1 conv keeps the gradient flow of a
    dense path at half the compute.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int = 1, shortcut: bool = True, expansion: float = 0.5
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.main = conv_bn_act(in_channels, hidden, 1)
        self.skip = conv_bn_act(in_channels, hidden, 1)
        self.blocks = nn.Sequential(
            *(Bottleneck(hidden, hidden, shortcut, (1, 3), expansion=1.0) for _ in range(num_blocks))
        )
        self.fuse = conv_bn_act(2 * hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat((self.blocks(self.main(x)), self.skip(x)), dim=1))


class C2f(nn.Module):
    """CSP bottleneck with two convolutions where every bottleneck's output joins the concat (YOLOv8).

    One 1x1 conv makes ``2 * hidden`` channels and is split in halves; the bottlenecks run on the second
    half one after another and all intermediate maps are concatenated (the ELAN idea of YOLOv7, Wang et al.
    2022: many short gradient paths), then fused by a 1x1 conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int = 1, shortcut: bool = False, expansion: float = 0.5
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.split = conv_bn_act(in_channels, 2 * hidden, 1)
        self.blocks = nn.ModuleList(
            Bottleneck(hidden, hidden, shortcut, (3, 3), expansion=1.0) for _ in range(num_blocks)
        )
        self.fuse = conv_bn_act((2 + num_blocks) * hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.split(x).chunk(2, dim=1))
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling as in YOLOv3-SPP / YOLOv4 (after He et al. 2014).

    Stride-1 max pools of several sizes see ever larger neighbourhoods at no parameter cost; the input and
    the pooled maps are concatenated and fused by a 1x1 conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: Sequence[int] = (5, 9, 13),
        act_layer: ActLayer = nn.SiLU,
    ) -> None:
        super().__init__()
        self.pools = nn.ModuleList(nn.MaxPool2d(k, stride=1, padding=k // 2) for k in kernel_sizes)
        self.fuse = conv_bn_act(in_channels * (1 + len(kernel_sizes)), out_channels, 1, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([x, *(pool(x) for pool in self.pools)], dim=1))


class SPPF(nn.Module):
    """SPP-Fast (YOLOv5): three chained 5x5 max pools equal 5x5, 9x9 and 13x13 pools, at a third of the cost.

    A 1x1 conv halves the channels first; the input and the three pooled maps are fused by a 1x1 conv.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 5) -> None:
        super().__init__()
        hidden = in_channels // 2
        self.reduce = conv_bn_act(in_channels, hidden, 1)
        self.pool = nn.MaxPool2d(kernel_size, stride=1, padding=kernel_size // 2)
        self.fuse = conv_bn_act(4 * hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [self.reduce(x)]
        for _ in range(3):
            parts.append(self.pool(parts[-1]))
        return self.fuse(torch.cat(parts, dim=1))


class AnchorHead(nn.Module):
    """The YOLOv3/v5 prediction layer: per level one 1x1 conv to ``A * (5 + K)`` channels.

    Each anchor predicts ``(t_x, t_y, t_w, t_h, objectness, K class logits)``. The biases start at the
    YOLOv5 priors: about 8 objects per 640 x 640 image for the objectness (so the first iterations are
    not swamped by the loss of the many empty cells) and a class probability of ``0.6 / (K - 1)``.

    Args:
        in_channels: channels of each level's input, finest level first.
        num_anchors: anchors per cell ``A``.
        num_classes: ``K``.
        strides: stride of each level (for the objectness prior).
    """

    def __init__(self, in_channels: Sequence[int], num_anchors: int, num_classes: int, strides: Sequence[int]) -> None:
        super().__init__()
        self.num_anchors, self.num_outputs = num_anchors, 5 + num_classes
        self.convs = nn.ModuleList(nn.Conv2d(c, num_anchors * self.num_outputs, 1) for c in in_channels)
        with torch.no_grad():
            for conv, stride in zip(self.convs, strides):
                bias = conv.bias.view(num_anchors, self.num_outputs)
                bias[:, 4] = math.log(8 / (640 / stride) ** 2)
                bias[:, 5:] = math.log(0.6 / (num_classes - 0.99999))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Maps ``[B, C_l, H_l, W_l]`` -> raw predictions ``[B, A, H_l, W_l, 5 + K]`` per level."""
        outputs = []
        for conv, feature in zip(self.convs, features):
            out = conv(feature)
            out = out.unflatten(1, (self.num_anchors, self.num_outputs))  # [B, A, 5 + K, H, W]
            outputs.append(out.permute(0, 1, 3, 4, 2).contiguous())
        return outputs
