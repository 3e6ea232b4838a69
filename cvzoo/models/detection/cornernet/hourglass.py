"""Stacked hourglass backbone (Newell et al. 2016) as CornerNet modifies it (Law & Deng 2018, Sec. 4.1).

CornerNet's changes to the original hourglass: a stride-2 residual block downsamples instead of max
pooling; each level halves the resolution and widens the features (hourglass-104: 5 levels, widths 256,
256, 384, 384, 384, 512, residual modules 2, 2, 2, 2, 2, 4 per level); nearest-neighbour upsampling with
two residual modules on the way up; a 7x7 stride-2 conv (128 channels) and a stride-2 residual block
(256 channels) before the first hourglass (output stride 4); two stacked hourglasses joined by 1x1
conv-BN of the first one's input and output, with the prediction modules on each (intermediate
supervision in training, only the last one's predictions at test time).

Upsampling goes to the exact size of the skip branch, so any input size works (odd sizes round up on the
way down); sizes that are multiples of ``4 * 2^levels`` keep every level an exact 2x.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.models.detection.cornernet.corner_pool import conv_bn


class Residual(nn.Module):
    """Residual block: 3x3 conv-BN-ReLU (``stride``), 3x3 conv-BN, plus the input (1x1 conv-BN when the
    shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.skip = (
            nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))
            if stride != 1 or in_channels != out_channels else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.skip(x))


def residuals(in_channels: int, out_channels: int, count: int, stride: int = 1) -> nn.Sequential:
    """``count`` residual blocks, the first one changing channels / stride."""
    return nn.Sequential(Residual(in_channels, out_channels, stride),
                         *[Residual(out_channels, out_channels) for _ in range(count - 1)])


class Hourglass(nn.Module):
    """One hourglass, built recursively: a skip branch at this resolution, and a stride-2 path through the
    next level that is upsampled and added back.

    Args:
        channels: ``[C_0, C_1, ..., C_n]`` widths from this level down (n + 1 entries for n levels).
        modules: residual blocks per level, same length (the innermost count is the bottleneck's).
    """

    def __init__(self, channels: Sequence[int], modules: Sequence[int]) -> None:
        super().__init__()
        if len(channels) != len(modules) or len(channels) < 2:
            raise ValueError(f"Hourglass: channels {list(channels)} and modules {list(modules)} need the same "
                             "length, at least 2")
        here, below = channels[0], channels[1]
        self.skip = residuals(here, here, modules[0])
        self.down = residuals(here, below, modules[0], stride=2)
        self.inner = (Hourglass(channels[1:], modules[1:]) if len(channels) > 2
                      else residuals(below, below, modules[1]))
        self.up = nn.Sequential(*[Residual(below, below) for _ in range(modules[0] - 1)], Residual(below, here))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(x)))
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    """Stem + ``num_stacks`` hourglasses; returns one ``[B, out_channels, H/4, W/4]`` map per stack.

    Args:
        channels: hourglass widths per level (``levels + 1`` entries; ``channels[0]`` is the width between
            hourglasses, 256 in the paper).
        modules: residual blocks per level.
        num_stacks: 2 for hourglass-104.
        stem_channels: the 7x7 stride-2 conv's channels (128).
        out_channels: width of each stack's output conv that feeds the prediction modules (256).
        in_channels: image channels.
    """

    def __init__(self, channels: Sequence[int] = (256, 256, 384, 384, 384, 512),
                 modules: Sequence[int] = (2, 2, 2, 2, 2, 4), num_stacks: int = 2, stem_channels: int = 128,
                 out_channels: int = 256, in_channels: int = 3) -> None:
        super().__init__()
        if num_stacks < 1:
            raise ValueError(f"StackedHourglass: num_stacks must be >= 1, got {num_stacks}")
        width = channels[0]
        self.levels = len(channels) - 1
        self.out_channels = out_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(stem_channels), nn.ReLU(inplace=True),
            Residual(stem_channels, width, stride=2),
        )
        self.hourglasses = nn.ModuleList(Hourglass(channels, modules) for _ in range(num_stacks))
        self.outputs = nn.ModuleList(conv_bn(width, out_channels, 3) for _ in range(num_stacks))
        # Between stacks: the previous stack's input and output, each through 1x1 conv-BN, summed, ReLU,
        # then a residual block.
        self.merge_inputs = nn.ModuleList(conv_bn(width, width, 1, relu=False) for _ in range(num_stacks - 1))
        self.merge_outputs = nn.ModuleList(conv_bn(out_channels, width, 1, relu=False) for _ in range(num_stacks - 1))
        self.merge_blocks = nn.ModuleList(Residual(width, width) for _ in range(num_stacks - 1))

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(images)
        outputs = []
        for i, (hourglass, output) in enumerate(zip(self.hourglasses, self.outputs)):
            out = output(hourglass(x))
            outputs.append(out)
            if i + 1 < len(self.hourglasses):
                x = self.merge_blocks[i](F.relu(self.merge_inputs[i](x) + self.merge_outputs[i](out)))
        return outputs
