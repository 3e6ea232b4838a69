"""DenseNet-121/161/169/201 (Huang et al., 2017, "Densely Connected Convolutional Networks").

Inside a dense block every layer receives the concatenation of all earlier maps of the block and adds
``growth_rate`` new channels: features are reused instead of re-learned, so layers stay narrow (§3).
Layers are pre-activation "DenseNet-B" bottlenecks, BN-ReLU-1x1 conv (``bn_size * growth_rate``
channels) then BN-ReLU-3x3 conv (``growth_rate``); transitions between blocks (BN-ReLU-1x1 conv-2x2
average pool) halve the channels ("DenseNet-C", compression 0.5) and the resolution.

torchvision-compatible: its ``features.denseblockN.denselayerM.conv1`` checkpoints, including the old
``norm.1``-style keys of the original release, load through the ``densenet`` remap.

Stages (``feature_info``): the stem at stride 2, dense blocks 1-3 at strides 4, 8, 16 and the last
block after the final BN-ReLU at 32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv -> BN-ReLU-3x3 conv on the concatenation of its inputs; returns ``growth_rate`` maps."""

    def __init__(self, in_channels: int, growth_rate: int, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        hidden = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(hidden)
        self.act2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, growth_rate, 3, padding=1, bias=False)
        self.dropout = nn.Dropout(drop_rate)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = self.conv1(self.act1(self.norm1(torch.cat(inputs, dim=1))))
        return self.dropout(self.conv2(self.act2(self.norm2(out))))


class Transition(nn.Sequential):
    """BN-ReLU-1x1 conv-2x2 average pool between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseStage(nn.Module):
    """An optional transition (for every block after the first) followed by a dense block."""

    def __init__(
        self, in_channels: int, depth: int, growth_rate: int, bn_size: int, drop_rate: float, transition_to: int | None
    ) -> None:
        super().__init__()
        if transition_to is not None:
            self.transition = Transition(in_channels, transition_to)
            in_channels = transition_to
        else:
            self.transition = nn.Identity()
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate) for i in range(depth)
        )
        self.out_channels = in_channels + depth * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [self.transition(x)]
        for layer in self.layers:
            features.append(layer(features))
        return torch.cat(features, dim=1)


class DenseNet(Classifier):
    """DenseNet-BC for ImageNet (7x7 stride-2 stem + max-pool, four dense blocks).

    Args:
        growth_rate: channels each layer adds (``k`` in the paper).
        depths: layers per dense block.
        stem_channels: width of the stem conv (``2k`` in the paper).
        bn_size: bottleneck width as a multiple of ``growth_rate`` (4 in DenseNet-B).
        compression: channel factor of each transition (0.5 in DenseNet-C).
        drop_rate: dropout after each layer.
        num_classes: classifier outputs; 0 makes ``forward`` return pooled features.
        in_channels: image channels.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        growth_rate: int = 32,
        depths: Sequence[int] = (6, 12, 24, 16),
        stem_channels: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        drop_rate: float = 0.0,
        num_classes: int = 1000,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False))
        self.stem.add_module("norm", nn.BatchNorm2d(stem_channels))
        self.stem.add_module("act", nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [FeatureInfo(stem_channels, 2, "stem")]
        stages, channels = [], stem_channels
        for index, depth in enumerate(depths):
            transition_to = None if index == 0 else int(channels * compression)
            stage = DenseStage(channels, depth, growth_rate, bn_size, drop_rate, transition_to)
            stages.append(stage)
            channels = stage.out_channels
            name = f"stages.{index}" if index < len(depths) - 1 else "final_act"
            self.feature_info.append(FeatureInfo(channels, 2 ** (index + 2), name))
        self.stages = nn.Sequential(*stages)
        self.final_norm = nn.BatchNorm2d(channels)
        self.final_act = nn.ReLU(inplace=True)
        self.num_features = channels
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x]
        x = self.pool(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        features[-1] = self.final_act(self.final_norm(x))
        return features


def remap_torchvision_densenet(state: StateDict) -> StateDict:
    """torchvision ``features.conv0`` / ``features.denseblockN.denselayerM`` / ``features.transitionN`` /
    ``features.norm5`` -> ours; the original release's ``norm.1`` / ``conv.2`` keys are read too."""
    if not any(key.startswith("features.denseblock") for key in state):
        raise KeyError("not a torchvision DenseNet state dict")
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.", r"\1\2.", key)  # old "norm.1" style
        key = re.sub(r"^features\.conv0\.", "stem.conv.", key)
        key = re.sub(r"^features\.norm0\.", "stem.norm.", key)
        key = re.sub(r"^features\.norm5\.", "final_norm.", key)
        key = re.sub(
            r"^features\.denseblock(\d+)\.denselayer(\d+)\.",
            lambda m: f"stages.{int(m.group(1)) - 1}.layers.{int(m.group(2)) - 1}.", key,
        )
        key = re.sub(r"^features\.transition(\d+)\.", lambda m: f"stages.{m.group(1)}.transition.", key)
        renamed[key] = value
    return renamed


register_remap("densenet", remap_torchvision_densenet, name="densenet:torchvision")

_tv = "torchvision:densenet"
register_model("densenet121", DenseNet, growth_rate=32, depths=(6, 12, 24, 16), stem_channels=64, reference=_tv + "121")
register_model("densenet161", DenseNet, growth_rate=48, depths=(6, 12, 36, 24), stem_channels=96, reference=_tv + "161")
register_model("densenet169", DenseNet, growth_rate=32, depths=(6, 12, 32, 32), stem_channels=64, reference=_tv + "169")
register_model("densenet201", DenseNet, growth_rate=32, depths=(6, 12, 48, 32), stem_channels=64, reference=_tv + "201")
