"""Path Aggregation Network neck (Liu et al. 2018, "Path Aggregation Network for Instance Segmentation"),
the neck of YOLOv4/v5/v8: an FPN-like top-down path followed by a bottom-up path, both merging by
concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

ConvFactory = Callable[[int, int, int, int], nn.Module]  # (in_channels, out_channels, kernel_size, stride)
BlockFactory = Callable[[int, int, int], nn.Module]  # (in_channels, out_channels, num_blocks)


class PathAggregationNetwork(nn.Module):
    """Three-level PAN: inputs and outputs at strides 8, 16, 32 (finest first).

    Top-down, the stride-32 map is upsampled 2x and concatenated with the stride-16 map, merged by a
    block, upsampled and merged with the stride-8 map (output P3). Bottom-up, a stride-2 3x3 conv brings
    P3 down to be merged with the top-down stride-16 map (output P4), and again with the stride-32 map
    (output P5): low-level localisation detail reaches the coarse levels through a short path.

    ``lateral_convs=True`` is YOLOv5's layout: a 1x1 conv before each upsampling narrows the coarser map
    (to the next finer output width) and that narrowed map is the one the bottom-up path picks up again.
    YOLOv8 drops those convs and concatenates the maps as they are.

    Args:
        in_channels: backbone channels ``(c3, c4, c5)``.
        out_channels: output channels ``(o3, o4, o5)``.
        block: factory ``(in, out, num_blocks) -> module``, e.g. C3 or C2f without shortcut.
        num_blocks: bottlenecks inside every block.
        conv: factory ``(in, out, kernel_size, stride) -> module`` for the lateral and downsampling convs.
        lateral_convs: YOLOv5 (True) or YOLOv8 (False) layout.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: Sequence[int],
        block: BlockFactory,
        num_blocks: int,
        conv: ConvFactory,
        lateral_convs: bool = True,
    ) -> None:
        super().__init__()
        if len(in_channels) != 3 or len(out_channels) != 3:
            raise ValueError(
                f"PathAggregationNetwork: needs 3 levels, got in {list(in_channels)}, out {list(out_channels)}"
            )
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels
        self.out_channels = list(out_channels)
        self.lateral5 = conv(c5, o4, 1, 1) if lateral_convs else nn.Identity()
        top = o4 if lateral_convs else c5
        self.top_down4 = block(top + c4, o4, num_blocks)
        self.lateral4 = conv(o4, o3, 1, 1) if lateral_convs else nn.Identity()
        middle = o3 if lateral_convs else o4
        self.top_down3 = block(middle + c3, o3, num_blocks)
        self.down3 = conv(o3, o3, 3, 2)
        self.bottom_up4 = block(o3 + middle, o4, num_blocks)
        self.down4 = conv(o4, o4, 3, 2)
        self.bottom_up5 = block(o4 + top, o5, num_blocks)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[P3, P4, P5]`` backbone maps -> ``[N3, N4, N5]`` with ``out_channels``."""
        p3, p4, p5 = features
        top = self.lateral5(p5)
        middle = self.lateral4(self.top_down4(torch.cat((_upsample(top), p4), dim=1)))
        n3 = self.top_down3(torch.cat((_upsample(middle), p3), dim=1))
        n4 = self.bottom_up4(torch.cat((self.down3(n3), middle), dim=1))
        n5 = self.bottom_up5(torch.cat((self.down4(n4), top), dim=1))
        return [n3, n4, n5]


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="nearest")
