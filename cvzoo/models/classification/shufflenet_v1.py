"""ShuffleNet v1 (Zhang et al., 2018, "ShuffleNet: An Extremely Efficient CNN for Mobile Devices").

Pointwise (1x1) convs dominate the cost of a bottleneck once the 3x3 is depthwise, so ShuffleNet makes
them *group* convs; stacked group convs would only ever see their own group's channels, so a
``channel_shuffle`` between them lets information cross groups (§3.1, Fig. 1). A unit is 1x1 GConv ->
BN-ReLU -> shuffle -> 3x3 depthwise (stride) -> BN -> 1x1 GConv -> BN, added to the input and ReLU'd;
a stride-2 unit instead concatenates a 3x3 average-pooled shortcut, widening the map cheaply (§3.2,
Fig. 2). The bottleneck is a quarter of the unit's output width.

There is no reference library; ``tests/models/test_zoo_cnn_extra.py`` checks the parameter and MAC
counts against the paper's Table 1 (e.g. 1x, g=3: ~137 MFLOPs at 224 px). Width multipliers scale every
width by ``s`` ("ShuffleNet s x", §4.1.1); widths are rounded so the group convs divide evenly.

Stages (``feature_info``): stem conv at stride 2, max-pool at 4, then stages 2-4 at 8, 16, 32.
"""

from __future__ import annotations

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, make_divisible
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model

# Output channels of stages 2-4 of ShuffleNet 1x for each number of groups (Zhang et al., Table 1).
STAGE_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` groups: ``[a0 a1 | b0 b1] -> [a0 b0 a1 b1]``.

    Reshape ``[B, C, H, W]`` to ``[B, g, C/g, H, W]``, swap the two channel axes and flatten back
    (Zhang et al., 2018, §3.1), so each group of the next group conv receives channels of every group.
    """
    batch, channels, height, width = x.shape
    if channels % groups:
        raise ValueError(f"{channels} channels cannot be shuffled in {groups} groups")
    x = x.reshape(batch, groups, channels // groups, height, width).transpose(1, 2)
    return x.reshape(batch, channels, height, width)


class ShuffleUnit(nn.Module):
    """A ShuffleNet v1 unit (Fig. 2b at stride 1, Fig. 2c at stride 2).

    Args:
        in_channels: input channels.
        out_channels: output channels of the unit (at stride 2 the branch makes ``out - in`` of them
            and the pooled input the rest).
        groups: groups of the two pointwise convs.
        stride: 1 (residual add) or 2 (average-pooled shortcut, concatenated).
        group_first_conv: False for the very first unit, whose input (the 24-channel stem) is too
            thin to split into groups (§3.3).
    """

    def __init__(
        self, in_channels: int, out_channels: int, groups: int, stride: int, group_first_conv: bool = True
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride, self.groups = stride, groups
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        bottleneck = out_channels // 4
        self.reduce = ConvNormAct(in_channels, bottleneck, 1, groups=groups if group_first_conv else 1)
        self.depthwise = ConvNormAct(bottleneck, bottleneck, 3, stride, groups=bottleneck, act_layer=None)
        self.expand = ConvNormAct(bottleneck, branch_channels, 1, groups=groups, act_layer=None)
        self.shortcut = nn.AvgPool2d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = channel_shuffle(self.reduce(x), self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return self.act(torch.cat([self.shortcut(x), out], dim=1))
        return self.act(x + out)


class ShuffleNetV1(Classifier):
    """ShuffleNet v1.

    Args:
        groups: groups of the pointwise convs (1, 2, 3, 4 or 8).
        width_mult: the paper's scale factor ``s`` (0.25 to 2).
        depths: units per stage (stages 2-4).
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled last stage.
        in_channels: image channels.
    """

    def __init__(
        self,
        groups: int = 3,
        width_mult: float = 1.0,
        depths: tuple[int, int, int] = (4, 8, 4),
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if groups not in STAGE_CHANNELS:
            raise ValueError(f"groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
        # Every width must split into `groups` groups, bottlenecks (a quarter) included; at 1x the
        # published widths already do, at other scales they are rounded to the nearest such width.
        stem_channels = make_divisible(24 * width_mult, groups)
        base = STAGE_CHANNELS[groups]
        widths = [make_divisible(base * width_mult * 2**i, 4 * groups) for i in range(3)]
        self.stem = ConvNormAct(in_channels, stem_channels, 3, 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [FeatureInfo(stem_channels, 2, "stem"), FeatureInfo(stem_channels, 4, "maxpool")]
        stages, channels = [], stem_channels
        for index, (depth, width) in enumerate(zip(depths, widths)):
            units = [ShuffleUnit(channels, width, groups, 2, group_first_conv=index > 0)]
            units += [ShuffleUnit(width, width, groups, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*units))
            channels = width
            self.feature_info.append(FeatureInfo(width, 2 ** (index + 3), f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.maxpool(x)
        features.append(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


register_model("shufflenet_v1_g1", ShuffleNetV1, groups=1)
register_model("shufflenet_v1_g2", ShuffleNetV1, groups=2)
register_model("shufflenet_v1_g3", ShuffleNetV1, groups=3)
register_model("shufflenet_v1_g4", ShuffleNetV1, groups=4)
register_model("shufflenet_v1_g8", ShuffleNetV1, groups=8)
register_model("shufflenet_v1_g3_x0_5", ShuffleNetV1, groups=3, width_mult=0.5)
register_model("shufflenet_v1_g3_x1_5", ShuffleNetV1, groups=3, width_mult=1.5)
register_model("shufflenet_v1_g3_x2_0", ShuffleNetV1, groups=3, width_mult=2.0)
register_model("shufflenet_v1_g8_x0_5", ShuffleNetV1, groups=8, width_mult=0.5)
