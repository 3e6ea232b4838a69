"""EfficientNetV2 S/M/L (Tan & Le, 2021, "EfficientNetV2: Smaller Models and Faster Training").

The early stages use Fused-MBConv: the 1x1 expansion and the depthwise 3x3 of MBConv replaced by one
regular 3x3 conv, which is faster on accelerators where depthwise convs underuse the hardware while
the maps are large (§3.2, Fig. 2); the later stages keep MBConv with SE. The training-aware search
also prefers smaller expansion ratios and 3x3 kernels only (§3.3, Table 4).

torchvision-compatible (BN eps 0.001): its checkpoints load through the ``efficientnet`` remap, which
tells Fused-MBConv and MBConv blocks apart by their kernels. The model is ``EfficientNet`` from
``efficientnet.py`` with Fused-MBConv rows in its stage table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, DropPath
from cvzoo.models.classification.efficientnet import EfficientNet, StageSpec
from cvzoo.models.registry import register_model

NormLayer = Callable[[int], nn.Module]


class FusedMBConv(nn.Module):
    """kxk conv (expand, strided) -> 1x1 linear projection, plus the shortcut (Tan & Le, 2021, Fig. 2).

    With ``expand_ratio == 1`` the block is a single kxk conv + BN + SiLU from input to output width.
    Children: ``fused``, ``project`` (an identity when ``expand_ratio == 1``), ``drop_path``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: size of the fused conv.
        stride: its stride.
        expand_ratio: hidden width = ``in_channels * expand_ratio``.
        norm_layer: normalisation constructor.
        drop_path_rate: stochastic depth probability of this block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        norm_layer: NormLayer = nn.BatchNorm2d,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        hidden = int(in_channels * expand_ratio)
        if hidden == in_channels:
            self.fused = ConvNormAct(in_channels, out_channels, kernel_size, stride, norm_layer=norm_layer, act_layer=nn.SiLU)
            self.project: nn.Module = nn.Identity()
        else:
            self.fused = ConvNormAct(in_channels, hidden, kernel_size, stride, norm_layer=norm_layer, act_layer=nn.SiLU)
            self.project = ConvNormAct(hidden, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if self.use_residual and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.fused(x))
        return x + self.drop_path(out) if self.use_residual else out


# (expand ratio, kernel, stride, in, out, depth): Tan & Le, 2021, Table 4 (S); M and L from the
# authors' released configurations (as in torchvision).
EFFICIENTNET_V2_S = (
    StageSpec(1, 3, 1, 24, 24, 2, FusedMBConv),
    StageSpec(4, 3, 2, 24, 48, 4, FusedMBConv),
    StageSpec(4, 3, 2, 48, 64, 4, FusedMBConv),
    StageSpec(4, 3, 2, 64, 128, 6),
    StageSpec(6, 3, 1, 128, 160, 9),
    StageSpec(6, 3, 2, 160, 256, 15),
)
EFFICIENTNET_V2_M = (
    StageSpec(1, 3, 1, 24, 24, 3, FusedMBConv),
    StageSpec(4, 3, 2, 24, 48, 5, FusedMBConv),
    StageSpec(4, 3, 2, 48, 80, 5, FusedMBConv),
    StageSpec(4, 3, 2, 80, 160, 7),
    StageSpec(6, 3, 1, 160, 176, 14),
    StageSpec(6, 3, 2, 176, 304, 18),
    StageSpec(6, 3, 1, 304, 512, 5),
)
EFFICIENTNET_V2_L = (
    StageSpec(1, 3, 1, 32, 32, 4, FusedMBConv),
    StageSpec(4, 3, 2, 32, 64, 7, FusedMBConv),
    StageSpec(4, 3, 2, 64, 96, 7, FusedMBConv),
    StageSpec(4, 3, 2, 96, 192, 10),
    StageSpec(6, 3, 1, 192, 224, 19),
    StageSpec(6, 3, 2, 224, 384, 25),
    StageSpec(6, 3, 1, 384, 640, 7),
)


def efficientnet_v2(stages: tuple[StageSpec, ...], drop_rate: float, **kwargs: Any) -> EfficientNet:
    """EfficientNetV2: 1280-wide head conv, BN eps 0.001 (weights ported from TensorFlow)."""
    return EfficientNet(stages, head_channels=1280, drop_rate=drop_rate, norm_eps=1e-3, **kwargs)


# The registry checks model.kwargs against EfficientNet's signature (cvzoo.models.registry.accepted_keywords).
efficientnet_v2.forwards_kwargs_to = EfficientNet  # type: ignore[attr-defined]


# Input sizes are the evaluation resolutions (training ramps up to them with progressive learning).
_tv = "torchvision:efficientnet_v2_"
register_model(
    "efficientnet_v2_s", efficientnet_v2, stages=EFFICIENTNET_V2_S, drop_rate=0.2, reference=_tv + "s",
    input_size=(3, 384, 384),
)
register_model(
    "efficientnet_v2_m", efficientnet_v2, stages=EFFICIENTNET_V2_M, drop_rate=0.3, reference=_tv + "m",
    input_size=(3, 480, 480),
)
register_model(
    "efficientnet_v2_l", efficientnet_v2, stages=EFFICIENTNET_V2_L, drop_rate=0.4, reference=_tv + "l",
    input_size=(3, 480, 480),
)
