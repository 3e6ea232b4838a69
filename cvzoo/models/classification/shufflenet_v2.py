"""ShuffleNet v2 x0.5 / x1.0 / x1.5 / x2.0 (Ma et al., 2018, "ShuffleNet V2: Practical Guidelines for
Efficient CNN Architecture Design").

Designed from measured speed rather than FLOPs (§2, four guidelines: equal channel widths minimise
memory access, group convs cost memory access, fragmentation hurts parallelism, element-wise ops are
not free). A stride-1 unit splits the channels in two halves, passes one through unchanged and the
other through 1x1 -> depthwise 3x3 -> 1x1 (all equal width, no group convs), concatenates (no add)
and shuffles the channels. A stride-2 unit feeds the whole input to both branches, the shortcut
branch getting a depthwise 3x3 + 1x1 of its own, which doubles the width (§3, Fig. 3c/d).

torchvision-compatible: its ``stage2.0.branch2.3.weight``-style checkpoints load through the
``shufflenetv2`` remap.

Stages (``feature_info``): stem conv at stride 2, max-pool at 4, stages at 8 and 16, ``head_conv`` at 32.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.classification.base import Classifier
from cvzoo.models.classification.shufflenet_v1 import channel_shuffle
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


def _branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """1x1 conv-BN-ReLU -> depthwise 3x3-BN (no ReLU, §3) -> 1x1 conv-BN-ReLU."""
    return nn.Sequential(
        OrderedDict(
            reduce=ConvNormAct(in_channels, out_channels, 1),
            depthwise=ConvNormAct(out_channels, out_channels, 3, stride, groups=out_channels, act_layer=None),
            expand=ConvNormAct(out_channels, out_channels, 1),
        )
    )


class ShuffleV2Block(nn.Module):
    """ShuffleNet v2 unit.

    Args:
        in_channels: input channels.
        out_channels: output channels (even); each branch makes half of them.
        stride: 1 (channel split, identity half) or 2 (both branches see the input, map halves).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 unit keeps its width, got {in_channels} -> {out_channels}")
        self.stride = stride
        half = out_channels // 2
        if stride == 2:
            self.shortcut = nn.Sequential(
                OrderedDict(
                    depthwise=ConvNormAct(in_channels, in_channels, 3, 2, groups=in_channels, act_layer=None),
                    pointwise=ConvNormAct(in_channels, half, 1),
                )
            )
        self.branch = _branch(in_channels if stride == 2 else half, half, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, processed = x.chunk(2, dim=1)
            out = torch.cat([kept, self.branch(processed)], dim=1)
        else:
            out = torch.cat([self.shortcut(x), self.branch(x)], dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(Classifier):
    """ShuffleNet v2.

    Args:
        stage_channels: widths of the stem, stages 2-4 and the final 1x1 conv (Ma et al., Table 5).
        depths: units per stage.
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled ``head_conv`` features.
        in_channels: image channels.
    """

    def __init__(
        self,
        stage_channels: Sequence[int] = (24, 116, 232, 464, 1024),
        depths: Sequence[int] = (4, 8, 4),
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if len(stage_channels) != 5 or len(depths) != 3:
            raise ValueError(f"expected 5 widths and 3 depths, got {stage_channels}, {depths}")
        stem_channels = stage_channels[0]
        self.stem = ConvNormAct(in_channels, stem_channels, 3, 2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [FeatureInfo(stem_channels, 2, "stem"), FeatureInfo(stem_channels, 4, "maxpool")]
        stages, channels = [], stem_channels
        for index, (depth, width) in enumerate(zip(depths, stage_channels[1:4])):
            blocks = [ShuffleV2Block(channels, width, 2)] + [ShuffleV2Block(width, width, 1) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
            if index < 2:
                self.feature_info.append(FeatureInfo(width, 2 ** (index + 3), f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = stage_channels[4]
        self.head_conv = ConvNormAct(channels, self.num_features, 1)
        self.feature_info.append(FeatureInfo(self.num_features, 32, "head_conv"))
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.maxpool(x)
        features.append(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < 2:
                features.append(x)
        features.append(self.head_conv(x))
        return features


# torchvision's positional names -> ours. branch1 = [dw conv, BN, 1x1 conv, BN, ReLU];
# branch2 = [1x1 conv, BN, ReLU, dw conv, BN, 1x1 conv, BN, ReLU].
_TORCHVISION_NAMES = (
    (r"^conv1\.0\.", "stem.conv."), (r"^conv1\.1\.", "stem.bn."),
    (r"^conv5\.0\.", "head_conv.conv."), (r"^conv5\.1\.", "head_conv.bn."),
    (r"\.branch1\.0\.", ".shortcut.depthwise.conv."), (r"\.branch1\.1\.", ".shortcut.depthwise.bn."),
    (r"\.branch1\.2\.", ".shortcut.pointwise.conv."), (r"\.branch1\.3\.", ".shortcut.pointwise.bn."),
    (r"\.branch2\.0\.", ".branch.reduce.conv."), (r"\.branch2\.1\.", ".branch.reduce.bn."),
    (r"\.branch2\.3\.", ".branch.depthwise.conv."), (r"\.branch2\.4\.", ".branch.depthwise.bn."),
    (r"\.branch2\.5\.", ".branch.expand.conv."), (r"\.branch2\.6\.", ".branch.expand.bn."),
)


def remap_torchvision_shufflenet_v2(state: StateDict) -> StateDict:
    """torchvision ``conv1`` / ``stageN.i.branch{1,2}.k`` / ``conv5`` / ``fc`` -> ours."""
    if not any(key.startswith("stage2.") for key in state):
        raise KeyError("not a torchvision ShuffleNet v2 state dict")
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"^stage(\d)\.", lambda m: f"stages.{int(m.group(1)) - 2}.", key)
        for pattern, replacement in _TORCHVISION_NAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


register_remap("shufflenetv2", remap_torchvision_shufflenet_v2, name="shufflenetv2:torchvision")

_tv = "torchvision:shufflenet_v2_"
register_model("shufflenet_v2_x0_5", ShuffleNetV2, stage_channels=(24, 48, 96, 192, 1024), reference=_tv + "x0_5")
register_model("shufflenet_v2_x1_0", ShuffleNetV2, stage_channels=(24, 116, 232, 464, 1024), reference=_tv + "x1_0")
register_model("shufflenet_v2_x1_5", ShuffleNetV2, stage_channels=(24, 176, 352, 704, 1024), reference=_tv + "x1_5")
register_model("shufflenet_v2_x2_0", ShuffleNetV2, stage_channels=(24, 244, 488, 976, 2048), reference=_tv + "x2_0")
