"""ResNets for small (28-32 px) images: CIFAR-10, MNIST, Fashion-MNIST.

An ImageNet ResNet shrinks a 32 px image to 8 px before its first residual stage (7x7 stride-2 stem +
max-pool). The small-image variants keep the full resolution instead: a single 3x3 stride-1 stem conv
and no max-pool.

* ``resnet20_cifar`` ... ``resnet110_cifar``: He et al., 2016, "Deep Residual Learning", §4.2 -- three
  stages of 16/32/64 channels with ``n`` basic blocks each (depth ``6n + 2``) and the parameter-free
  shortcut "option A" (stride-2 subsampling + zero-padded channels). ResNet-20 has 0.27M parameters.
* ``resnet18_cifar``: the ResNet-18 block layout (64..512 channels, 1x1 projection shortcuts) with the
  small-image stem, a common CIFAR baseline (11M parameters).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.classification.resnet import BasicBlock, Block, Bottleneck, make_stage
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and zero-pad the new channels (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"option-A shortcut cannot reduce channels ({in_channels} -> {out_channels})")
        self.stride = stride
        self.extra = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        # Split the padding on both sides as in the paper's reference code, keeping the identity
        # channels centred; F.pad's last pair addresses dim 1 (channels).
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


class CifarResNet(Classifier):
    """Residual network with a 3x3 stride-1 stem and no max-pool.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(3, 3, 3)`` for ResNet-20.
        widths: base channels per stage (``(16, 32, 64)`` or ``(64, 128, 256, 512)``).
        num_classes: classifier outputs (10 by default); 0 returns pooled ``[B, C]`` features.
        in_channels: image channels (1 for MNIST / Fashion-MNIST).
        shortcut: ``"A"`` (zero-pad, parameter-free) or ``"B"`` (1x1 conv + BN projection) where the
            shape changes.
        zero_init_residual: zero the last BN scale of each block (see ``ResNet``).

    Stages (``feature_info``): the stem ``act1`` at stride 1, then ``layer1``.. at strides 1, 2, 4(, 8).
    """

    def __init__(
        self,
        block: Block = BasicBlock,
        layers: Sequence[int] = (3, 3, 3),
        widths: Sequence[int] = (16, 32, 64),
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: str = "B",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != len(widths) or not layers:
            raise ValueError(f"layers {tuple(layers)} and widths {tuple(widths)} must be non-empty, same length")
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [FeatureInfo(widths[0], 1, "act1")]
        stage_in, reduction = widths[0], 1
        for index, (depth, width) in enumerate(zip(layers, widths)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            stage = make_stage(block, stage_in, width, depth, stride)
            out_channels = width * block.expansion
            if shortcut == "A" and stage[0].downsample is not None:
                stage[0].downsample = PadShortcut(stage_in, out_channels, stride)
            name = f"layer{index + 1}"
            self.add_module(name, stage)
            self.feature_info.append(FeatureInfo(out_channels, reduction, name))
            stage_in = out_channels
        self.stage_names = [info.module for info in self.feature_info[1:]]

        self.num_features = stage_in
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:  # after the loop above, which would reset the zeroed BN scales
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act1(self.bn1(self.conv1(x)))
        features = [x]
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features


_SMALL = {"input_size": (3, 32, 32), "widths": (16, 32, 64), "shortcut": "A"}
register_model("resnet20_cifar", CifarResNet, layers=(3, 3, 3), **_SMALL)
register_model("resnet32_cifar", CifarResNet, layers=(5, 5, 5), **_SMALL)
register_model("resnet44_cifar", CifarResNet, layers=(7, 7, 7), **_SMALL)
register_model("resnet56_cifar", CifarResNet, layers=(9, 9, 9), **_SMALL)
register_model("resnet110_cifar", CifarResNet, layers=(18, 18, 18), **_SMALL)
register_model(
    "resnet18_cifar", CifarResNet, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), input_size=(3, 32, 32)
)
