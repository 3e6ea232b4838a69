"""Atrous Spatial Pyramid Pooling (Chen et al., 2017, "Rethinking Atrous Convolution", DeepLab v3, §3.3).

Parallel branches look at one feature map with different fields of view: a 1x1 conv, three 3x3 convs
with atrous (dilation) rates, and an image-level branch (global average pool -> 1x1 conv -> broadcast
back), which the paper adds because a 3x3 filter with a rate close to the map size degenerates to its
centre tap. The concatenated branches are projected back to ``out_channels`` by a 1x1 conv.

Every conv is followed by BatchNorm and ReLU. Module names: ``branches.{0..3}`` (``conv``/``bn``),
``pool.block`` (the image-level 1x1 conv) and ``project``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers.conv_norm_act import ConvNormAct


def atrous_rates_for(output_stride: int) -> tuple[int, int, int]:
    """The paper's rates: (6, 12, 18) at output stride 16, doubled to (12, 24, 36) at 8 (§4.1)."""
    if output_stride == 16:
        return (6, 12, 18)
    if output_stride == 8:
        return (12, 24, 36)
    if output_stride == 32:  # not in the paper: halved once more for backbones that cannot dilate
        return (3, 6, 9)
    raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")


class ImagePooling(nn.Module):
    """Image-level features: global average pool, 1x1 conv + BN + ReLU, upsampled to the input size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.block = ConvNormAct(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.block(self.pool(x))
        # Upsampling a 1x1 map bilinearly is a broadcast; interpolate keeps the graph export-friendly.
        return F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling.

    Args:
        in_channels: channels of the input map ``[B, C, H, W]``.
        atrous_rates: dilation rates of the three 3x3 branches.
        out_channels: width of every branch and of the output.
        dropout: dropout after the projection (0.5 in torchvision's DeepLab v3 head, 0.1 in v3+ code).

    Shapes:
        ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (12, 24, 36),
        out_channels: int = 256,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        rates = tuple(int(r) for r in atrous_rates)
        if not rates or any(r < 1 for r in rates):
            raise ValueError(f"atrous_rates must be positive integers, got {tuple(atrous_rates)}")
        branches = [ConvNormAct(in_channels, out_channels, 1)]
        branches += [ConvNormAct(in_channels, out_channels, 3, dilation=rate) for rate in rates]
        self.branches = nn.ModuleList(branches)
        self.pool = ImagePooling(in_channels, out_channels)
        self.project = ConvNormAct((len(rates) + 2) * out_channels, out_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [branch(x) for branch in self.branches]
        parts.append(self.pool(x))
        return self.dropout(self.project(torch.cat(parts, dim=1)))


__all__ = ["ASPP", "ImagePooling", "atrous_rates_for"]
