"""RT-DETR's backbone: ResNet-vd ("PResNet"), the three maps C3, C4, C5 at strides 8, 16, 32.

He et al. 2019 ("Bag of Tricks for Image Classification", sec. 4.1, fig. 2) modify ResNet in two places
that RT-DETR's ResNet-18/50 keep (Zhao et al. 2024, sec. 5.1 use the "vd" ImageNet checkpoints):

- the deep stem (ResNet-C): the 7x7 stride-2 conv is replaced by three 3x3 convs (stride 2, 1, 1; widths
  ``w/2, w/2, w``), same receptive field at lower cost;
- the avg-pool shortcut (ResNet-D): a strided block's 1x1 projection would skip three quarters of its
  input; a 2x2 average pool does the striding first and the projection runs at stride 1.

The residual blocks are cvzoo's ResNet blocks (``classification.resnet``; the 3x3 conv of a bottleneck
carries the stride, as ResNet-B), given a ResNet-D shortcut. As in RT-DETR's code, the first block of every
stage projects its shortcut, even where the shapes already agree (ResNet-18's first stage).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, freeze_batch_norm
from cvzoo.models.classification.resnet import BasicBlock, Block, Bottleneck, conv1x1


def vd_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The ResNet-D projection: ``[avg-pool 2x2 (stride 2 only)] -> 1x1 conv -> BN`` (named ``pool``, ``conv``, ``bn``)."""
    layers: list[tuple[str, nn.Module]] = []
    if stride == 2:
        # ceil_mode: an odd-sized map keeps its last row / column (RT-DETR's pool), like the strided convs.
        layers.append(("pool", nn.AvgPool2d(2, 2, ceil_mode=True)))
    layers += [("conv", conv1x1(in_channels, out_channels)), ("bn", nn.BatchNorm2d(out_channels))]
    return nn.Sequential(OrderedDict(layers))


class ResNetVd(nn.Module):
    """ResNet-vd returning its last three stages.

    Args:
        block: ``BasicBlock`` (ResNet-18/34) or ``Bottleneck`` (ResNet-50/101).
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
        stem_width: width of the stem's last conv (64).
        frozen_batch_norm: replace every batch norm by a frozen one (fine-tuning from trained weights).
        in_channels: image channels.

    Attributes:
        out_channels: channels of C3, C4, C5.
        strides: their strides (8, 16, 32).
    """

    def __init__(self, block: Block = BasicBlock, layers: Sequence[int] = (2, 2, 2, 2), stem_width: int = 64,
                 frozen_batch_norm: bool = False, in_channels: int = 3) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNetVd needs blocks for 4 stages, got layers={tuple(layers)}")
        half = stem_width // 2
        self.stem = nn.Sequential(ConvNormAct(in_channels, half, 3, 2), ConvNormAct(half, half, 3, 1),
                                  ConvNormAct(half, stem_width, 3, 1))
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        channels, width = stem_width, 64
        stages = []
        for index, depth in enumerate(layers):
            stride = 1 if index == 0 else 2
            out = width * block.expansion
            blocks = [block(channels, width, stride, vd_shortcut(channels, out, stride))]
            blocks += [block(out, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels, width = out, width * 2
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = [64 * 2 ** i * block.expansion for i in (1, 2, 3)]
        self.strides = [8, 16, 32]
        if frozen_batch_norm:
            freeze_batch_norm(self)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> ``[C3, C4, C5]`` at strides 8, 16, 32."""
        x = self.layer1(self.maxpool(self.stem(images)))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


RESNET_VD = {"resnet18_vd": (BasicBlock, (2, 2, 2, 2)), "resnet34_vd": (BasicBlock, (3, 4, 6, 3)),
             "resnet50_vd": (Bottleneck, (3, 4, 6, 3)), "resnet101_vd": (Bottleneck, (3, 4, 23, 3))}


def resnet_vd(name: str, frozen_batch_norm: bool = False, in_channels: int = 3) -> ResNetVd:
    """A ResNet-vd by name (``resnet18_vd``, ``resnet34_vd``, ``resnet50_vd``, ``resnet101_vd``)."""
    if name not in RESNET_VD:
        raise ValueError(f"unknown ResNet-vd backbone {name!r}; choose one of {sorted(RESNET_VD)}")
    block, layers = RESNET_VD[name]
    return ResNetVd(block, layers, frozen_batch_norm=frozen_batch_norm, in_channels=in_channels)
