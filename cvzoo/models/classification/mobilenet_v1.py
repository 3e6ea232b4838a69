"""MobileNet v1 (Howard et al., 2017, "MobileNets: Efficient CNNs for Mobile Vision Applications").

A depthwise-separable conv factorises a standard kxk conv into a depthwise kxk conv (one filter per
channel) and a pointwise 1x1 conv that mixes channels, cutting the cost by about ``1/N + 1/k^2``, i.e.
8-9x for 3x3 kernels (§3.1). The network is a 3x3 stride-2 stem and 13 such blocks (Table 1). The
width multiplier ``alpha`` thins every layer (cost ~ ``alpha^2``, §3.3); the resolution multiplier is
just a smaller input size (the model is fully convolutional up to its global pool).

Matches timm's ``mobilenetv1_100`` (ReLU6 activations, BN after every conv, no extra head conv), whose
``conv_stem`` / ``blocks.S.J.conv_dw`` checkpoints load through the ``mobilenetv1`` remap.

Stages (``feature_info``): the last block at strides 2, 4, 8, 16 and 32.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, make_divisible
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

# (output channels, stride) of the 13 depthwise-separable blocks (Howard et al., Table 1), grouped by
# output stride: the first block of each group does the downsampling.
MOBILENET_V1_STAGES = (
    ((64, 1),),
    ((128, 2), (128, 1)),
    ((256, 2), (256, 1)),
    ((512, 2),) + ((512, 1),) * 5,
    ((1024, 2), (1024, 1)),
)


class DepthwiseSeparable(nn.Module):
    """Depthwise 3x3 conv-BN-act then pointwise 1x1 conv-BN-act (Howard et al., Fig. 3)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int = 1, act_layer: Callable[..., nn.Module] = nn.ReLU6
    ) -> None:
        super().__init__()
        self.depthwise = ConvNormAct(in_channels, in_channels, 3, stride, groups=in_channels, act_layer=act_layer)
        self.pointwise = ConvNormAct(in_channels, out_channels, 1, act_layer=act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetV1(Classifier):
    """MobileNet v1.

    Args:
        width_mult: the paper's ``alpha`` (1, 0.75, 0.5, 0.25 in Table 6); widths round to multiples of 8.
        num_classes: classifier outputs; 0 makes ``forward`` return pooled features.
        in_channels: image channels.
        drop_rate: dropout before the classifier.
        act_layer: activation; ReLU6 as in timm's trained weights (the paper says ReLU).
        stages: ``(out_channels, stride)`` blocks per output-stride group.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        width_mult: float = 1.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        act_layer: Callable[..., nn.Module] = nn.ReLU6,
        stages: Sequence[Sequence[tuple[int, int]]] = MOBILENET_V1_STAGES,
    ) -> None:
        super().__init__()
        channels = make_divisible(32 * width_mult, 8)
        self.stem = ConvNormAct(in_channels, channels, 3, 2, act_layer=act_layer)
        self.feature_info = []
        built, reduction = [], 2
        for index, stage in enumerate(stages):
            blocks = []
            for width, stride in stage:
                out_channels = make_divisible(width * width_mult, 8)
                blocks.append(DepthwiseSeparable(channels, out_channels, stride, act_layer))
                channels, reduction = out_channels, reduction * stride
            built.append(nn.Sequential(*blocks))
            self.feature_info.append(FeatureInfo(channels, reduction, f"stages.{index}"))
        self.stages = nn.Sequential(*built)
        self.num_features = channels
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


_TIMM_NAMES = (
    (r"^conv_stem\.", "stem.conv."), (r"^bn1\.", "stem.bn."), (r"^blocks\.", "stages."),
    (r"\.conv_dw\.", ".depthwise.conv."), (r"\.bn1\.", ".depthwise.bn."),
    (r"\.conv_pw\.", ".pointwise.conv."), (r"\.bn2\.", ".pointwise.bn."),
)


def remap_timm_mobilenet_v1(state: StateDict) -> StateDict:
    """timm ``conv_stem`` / ``bn1`` / ``blocks.S.J.{conv_dw,bn1,conv_pw,bn2}`` / ``classifier`` -> ours."""
    if "conv_stem.weight" not in state or not any(".conv_dw." in key for key in state):
        raise KeyError("not a timm MobileNet v1 state dict")
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in _TIMM_NAMES:
            key = re.sub(pattern, replacement, key)
        renamed[key] = value
    return renamed


register_remap("mobilenetv1", remap_timm_mobilenet_v1, name="mobilenetv1:timm")

register_model("mobilenet_v1_100", MobileNetV1, width_mult=1.0, reference="timm:mobilenetv1_100")
register_model("mobilenet_v1_075", MobileNetV1, width_mult=0.75)
register_model("mobilenet_v1_050", MobileNetV1, width_mult=0.5)
register_model("mobilenet_v1_025", MobileNetV1, width_mult=0.25)
