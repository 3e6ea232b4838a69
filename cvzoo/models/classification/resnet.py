"""ResNet and ResNeXt (He et al., 2016; Xie et al., 2017), torchvision-compatible.

The bottleneck puts its stride on the 3x3 conv ("ResNet v1.5", as torchvision and timm do), which is
slightly more accurate than the paper's stride-on-the-1x1 layout. Module names follow torchvision
(``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``, ``fc``), so torchvision and timm
ResNet state dicts load without a remap.

Stages (``feature_info``): the stem activation ``act1`` at stride 2, then ``layer1``..``layer4`` at
strides 4, 8, 16, 32. ``replace_stride_with_dilation`` trades the stride of layer2/3/4 for dilation
(Chen et al., 2017, DeepLab v3) so dense heads keep an output stride of 16 or 8.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model

NormLayer = Callable[[int], nn.Module]


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 conv without bias (a norm follows); ``padding = dilation`` keeps the size at stride 1."""
    return nn.Conv2d(
        in_channels, out_channels, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=False
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs plus the shortcut (ResNet-18/34).

    Args:
        in_channels: input channels.
        channels: width of both convs; the block outputs ``channels * expansion`` (= ``channels``).
        stride: stride of the first conv.
        downsample: projection applied to the shortcut when shape changes (None = identity).
        groups, base_width: must be 1 and 64 (grouped basic blocks are not a published design).
        dilation: dilation of both convs.
        norm_layer: normalisation constructor.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock supports groups=1 and base_width=64 only, got {groups}, {base_width}")
        self.conv1 = conv3x3(in_channels, channels, stride, dilation=dilation)
        self.bn1 = norm_layer(channels)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(channels, channels, dilation=dilation)
        self.bn2 = norm_layer(channels)
        self.downsample = downsample
        self.act2 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += shortcut  # in place: one fewer full-size allocation per block (autograd-safe after BN/conv)
        return self.act2(out)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (strided, grouped for ResNeXt) -> 1x1 expand by 4, plus the shortcut.

    The 3x3 width is ``int(channels * base_width / 64) * groups``: 64/4 for ResNet, ``groups`` x
    ``base_width`` cardinality x bottleneck width for ResNeXt (Xie et al., 2017, Table 1), and twice the
    width for Wide ResNet-50-2.
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        channels: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        width = int(channels * (base_width / 64.0)) * groups
        out_channels = channels * self.expansion
        self.conv1 = conv1x1(in_channels, width)
        self.bn1 = norm_layer(width)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.act2 = nn.ReLU(inplace=True)
        self.conv3 = conv1x1(width, out_channels)
        self.bn3 = norm_layer(out_channels)
        self.downsample = downsample
        self.act3 = nn.ReLU(inplace=True)

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.act2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += shortcut  # in place, as in BasicBlock
        return self.act3(out)


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(
    block: Block,
    in_channels: int,
    channels: int,
    depth: int,
    stride: int = 1,
    dilation: int = 1,
    first_dilation: int | None = None,
    groups: int = 1,
    base_width: int = 64,
    norm_layer: NormLayer = nn.BatchNorm2d,
) -> nn.Sequential:
    """``depth`` blocks; the first one strides and projects the shortcut (1x1 conv + norm) if needed.

    ``first_dilation`` (default ``dilation``) is the dilation of the first block: torchvision lets a
    dilated stage's first block keep the previous stage's dilation so the receptive field grows smoothly.
    """
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(conv1x1(in_channels, out_channels, stride), norm_layer(out_channels))
    common = {"groups": groups, "base_width": base_width, "norm_layer": norm_layer}
    first = dilation if first_dilation is None else first_dilation
    blocks = [block(in_channels, channels, stride, downsample, dilation=first, **common)]
    for _ in range(1, depth):
        blocks.append(block(out_channels, channels, dilation=dilation, **common))
    return nn.Sequential(*blocks)


class ResNet(Classifier):
    """ResNet / ResNeXt / Wide ResNet for ImageNet-sized inputs (7x7 stride-2 stem + max-pool).

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)`` for ResNet-50.
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled ``[B, C]`` features.
        in_channels: image channels.
        groups, width_per_group: ResNeXt cardinality and per-group width (1, 64 for plain ResNet).
        replace_stride_with_dilation: three flags for layer2..layer4.
        zero_init_residual: start every residual branch at zero by zeroing its last BN scale, so each
            block begins as the identity (Goyal et al., 2017, "Accurate, Large Minibatch SGD", §5.1).
        norm_layer: normalisation constructor (e.g. ``lambda c: nn.GroupNorm(32, c)``).
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] = (False, False, False),
        zero_init_residual: bool = False,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet needs 4 stage depths, got layers={tuple(layers)}")
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                f"replace_stride_with_dilation needs 3 flags (layer2..layer4), got {replace_stride_with_dilation}"
            )
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.feature_info = [FeatureInfo(64, 2, "act1")]
        # The max-pool halves the stem's stride-2 map, so layer1 already sits at stride 4.
        reduction, dilation, stage_in = 4, 1, 64
        for index, (depth, channels) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if index == 0 else 2
            previous_dilation = dilation
            if index > 0 and replace_stride_with_dilation[index - 1]:
                dilation, stride = dilation * stride, 1
            reduction *= stride
            name = f"layer{index + 1}"
            stage = make_stage(
                block, stage_in, channels, depth, stride, dilation, previous_dilation,
                groups=groups, base_width=width_per_group, norm_layer=norm_layer,
            )
            self.add_module(name, stage)
            stage_in = channels * block.expansion
            self.feature_info.append(FeatureInfo(channels * block.expansion, reduction, name))

        self.num_features = 512 * block.expansion
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, (BasicBlock, Bottleneck)):
                    module.zero_init_last()

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C_in, H, W]`` -> maps at strides 2, 4, 8, 16, 32 (``feature_info``)."""
        x = self.act1(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            features.append(x)
        return features


register_model("resnet18", ResNet, block=BasicBlock, layers=(2, 2, 2, 2), reference="torchvision:resnet18")
register_model("resnet34", ResNet, block=BasicBlock, layers=(3, 4, 6, 3), reference="torchvision:resnet34")
register_model("resnet50", ResNet, block=Bottleneck, layers=(3, 4, 6, 3), reference="torchvision:resnet50")
register_model("resnet101", ResNet, block=Bottleneck, layers=(3, 4, 23, 3), reference="torchvision:resnet101")
register_model("resnet152", ResNet, block=Bottleneck, layers=(3, 8, 36, 3), reference="torchvision:resnet152")
register_model(
    "resnext50_32x4d", ResNet, block=Bottleneck, layers=(3, 4, 6, 3), groups=32, width_per_group=4,
    reference="torchvision:resnext50_32x4d",
)
register_model(
    "resnext101_32x8d", ResNet, block=Bottleneck, layers=(3, 4, 23, 3), groups=32, width_per_group=8,
    reference="torchvision:resnext101_32x8d",
)
register_model(
    "wide_resnet50_2", ResNet, block=Bottleneck, layers=(3, 4, 6, 3), width_per_group=128,
    reference="torchvision:wide_resnet50_2",
)
