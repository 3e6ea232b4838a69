"""DeepLab v3 (Chen et al., 2017, "Rethinking Atrous Convolution") and v3+ (Chen et al., 2018, ECCV).

**v3**: a ResNet whose last stages trade stride for dilation (output stride 16 or 8), ASPP with
image-level pooling on the last map, then (as torchvision's head) a 3x3 conv + BN + ReLU and a 1x1
classifier; logits are bilinearly resized to the input. ``multi_grid`` multiplies the dilation of the
three blocks of the last stage by unit rates such as (1, 2, 4) (§3.2, "Multi-grid Method"). An
auxiliary ``FCNHead`` on the second-to-last stage is optional. torchvision state dicts load through the
``torchvision:deeplabv3`` remap.

**v3+**: the v3 encoder (ASPP at output stride 16 by default) plus a decoder (§3.1): the stride-4
low-level features are reduced to 48 channels by a 1x1 conv ("since the corresponding low-level
features usually contain a large number of channels which may outweigh the importance of the rich
encoder features"), concatenated with the 4x-upsampled ASPP output, refined by two 3x3 convs (256) and
classified; the logits are upsampled 4x to the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers.conv_norm_act import ConvNormAct
from cvzoo.models.necks.aspp import ASPP, atrous_rates_for
from cvzoo.models.registry import register_model
from cvzoo.models.segmentation.base import (
    FCNHead,
    Segmenter,
    feature_backbone,
    rename_prefixes,
    stage_index,
    upsample_to,
)
from cvzoo.models.weights import StateDict, register_remap


def apply_multi_grid(stage: nn.Sequential, unit_rates: Sequence[int]) -> None:
    """Set the 3x3 dilations of a ResNet stage's blocks to ``base * unit_rates[i]`` (DeepLab v3 §3.2).

    ``base`` is the stage's own dilation (2 at output stride 16, 4 at 8). Bottleneck and basic blocks
    keep their 3x3 conv in ``conv2``; padding follows the dilation so the map size is unchanged.
    """
    blocks = list(stage)
    if len(unit_rates) != len(blocks):
        raise ValueError(f"multi_grid needs one rate per block of the last stage ({len(blocks)}), got {unit_rates}")
    base = blocks[-1].conv2.dilation[0]
    for block, rate in zip(blocks, unit_rates):
        conv = block.conv2
        if conv.kernel_size != (3, 3):
            raise ValueError("multi_grid expects blocks whose conv2 is a 3x3 convolution")
        conv.dilation = (base * int(rate),) * 2
        conv.padding = (base * int(rate),) * 2


class DeepLabHead(nn.Module):
    """ASPP -> 3x3 conv + BN + ReLU -> 1x1 classifier (the v3 head)."""

    def __init__(self, in_channels: int, num_classes: int, atrous_rates: Sequence[int], channels: int = 256) -> None:
        super().__init__()
        self.aspp = ASPP(in_channels, atrous_rates, channels)
        self.block = ConvNormAct(channels, channels, 3)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block(self.aspp(x)))


class _DeepLabBase(Segmenter):
    def _build_encoder(self, backbone: str, backbone_weights: str | None, output_stride: int, in_channels: int,
                       multi_grid: Sequence[int] | None) -> None:
        self.output_stride = output_stride
        self.backbone = feature_backbone(backbone, output_stride, in_channels, backbone_weights)
        if multi_grid is not None:
            last = self.backbone.feature_info[-1].module
            stage = self.backbone.body.get_submodule(last)
            if not isinstance(stage, nn.Sequential) or not all(hasattr(b, "conv2") for b in stage):
                raise ValueError(f"multi_grid needs a ResNet-style last stage, {backbone!r} has {type(stage).__name__}")
            apply_multi_grid(stage, multi_grid)


class DeepLabV3(_DeepLabBase):
    """DeepLab v3.

    Args:
        num_classes: classes including background.
        backbone: registered classifier (dilation needs the ResNet family; others run at stride 32).
        backbone_weights: local ImageNet checkpoint of the backbone.
        output_stride: 8 (torchvision, default) or 16 (the paper's training setting) or 32.
        atrous_rates: ASPP rates; None = (12, 24, 36) at OS 8, (6, 12, 18) at OS 16.
        multi_grid: unit rates of the last stage's blocks, e.g. (1, 2, 4); None leaves them as built.
        aux_head: auxiliary ``FCNHead`` on the second-to-last stage (``"aux"`` output).
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        output_stride: int = 8,
        atrous_rates: Sequence[int] | None = None,
        multi_grid: Sequence[int] | None = None,
        aux_head: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._build_encoder(backbone, backbone_weights, output_stride, in_channels, multi_grid)
        channels = self.backbone.channels
        rates = atrous_rates if atrous_rates is not None else atrous_rates_for(output_stride)
        self.head = DeepLabHead(channels[-1], num_classes, rates)
        self.aux_head = FCNHead(channels[-2], num_classes) if aux_head else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        size = images.shape[-2:]
        outputs = {"out": upsample_to(self.head(features[-1]), size)}
        if self.aux_head is not None:
            outputs["aux"] = upsample_to(self.aux_head(features[-2]), size)
        return outputs


class DeepLabV3PlusDecoder(nn.Module):
    """Low-level 1x1 projection to ``low_channels`` (48), concat with upsampled encoder features,
    two 3x3 convs, 1x1 classifier (Chen et al., 2018, Fig. 2 and §4.1)."""

    def __init__(self, encoder_channels: int, low_level_channels: int, num_classes: int,
                 low_channels: int = 48, channels: int = 256) -> None:
        super().__init__()
        self.low_project = ConvNormAct(low_level_channels, low_channels, 1)
        self.fuse = nn.Sequential(
            ConvNormAct(encoder_channels + low_channels, channels, 3),
            ConvNormAct(channels, channels, 3),
        )
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, encoded: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        low = self.low_project(low_level)
        encoded = upsample_to(encoded, low.shape[-2:])
        return self.classifier(self.fuse(torch.cat([encoded, low], dim=1)))


class DeepLabV3Plus(_DeepLabBase):
    """DeepLab v3+ with plain convolutions on a ResNet.

    The paper's best model also makes the ASPP and decoder convolutions depthwise-separable and uses an
    aligned Xception backbone; plain convolutions on a ResNet are the common reproduction.

    Args:
        num_classes: classes including background.
        backbone: registered classifier with a stride-4 stage for the decoder.
        backbone_weights: local ImageNet checkpoint of the backbone.
        output_stride: 16 (default, the paper's trade-off) or 8.
        atrous_rates: ASPP rates; None derives them from the output stride.
        multi_grid: unit rates of the last stage's blocks, or None.
        low_level_channels: width of the low-level projection (48 in the paper).
        aux_head: auxiliary ``FCNHead`` on the second-to-last stage.
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        output_stride: int = 16,
        atrous_rates: Sequence[int] | None = None,
        multi_grid: Sequence[int] | None = None,
        low_level_channels: int = 48,
        aux_head: bool = False,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._build_encoder(backbone, backbone_weights, output_stride, in_channels, multi_grid)
        infos = self.backbone.feature_info
        self.low_index = stage_index(infos, 4, "DeepLab v3+ decoder")
        rates = atrous_rates if atrous_rates is not None else atrous_rates_for(output_stride)
        # The v3+ reference code uses dropout 0.1 after the ASPP projection.
        self.aspp = ASPP(infos[-1].channels, rates, 256, dropout=0.1)
        self.decoder = DeepLabV3PlusDecoder(256, infos[self.low_index].channels, num_classes, low_level_channels)
        self.aux_head = FCNHead(infos[-2].channels, num_classes) if aux_head else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        size = images.shape[-2:]
        logits = self.decoder(self.aspp(features[-1]), features[self.low_index])
        outputs = {"out": upsample_to(logits, size)}
        if self.aux_head is not None:
            outputs["aux"] = upsample_to(self.aux_head(features[-2]), size)
        return outputs


def torchvision_deeplabv3_to_cvzoo(state: StateDict) -> StateDict:
    """torchvision ``deeplabv3_resnet*`` keys -> ``DeepLabV3`` keys.

    torchvision's head is ``Sequential(ASPP, conv, BN, ReLU, conv)``; its ASPP holds ``convs.0`` (1x1),
    ``convs.1-3`` (dilated 3x3), ``convs.4`` (pooling: ``1`` conv, ``2`` BN) and ``project`` (``0`` conv,
    ``1`` BN). The aux head is the FCN head (``aux_classifier.{0,1,4}``).
    """
    if "classifier.0.project.0.weight" not in state or "backbone.conv1.weight" not in state:
        raise KeyError("not a torchvision DeepLab v3 state dict (no classifier.0.project / backbone.conv1)")
    table = {
        "backbone": "backbone.body",
        "classifier.0.convs.4.1": "head.aspp.pool.block.conv",
        "classifier.0.convs.4.2": "head.aspp.pool.block.bn",
        "classifier.0.project.0": "head.aspp.project.conv",
        "classifier.0.project.1": "head.aspp.project.bn",
        "classifier.1": "head.block.conv",
        "classifier.2": "head.block.bn",
        "classifier.4": "head.classifier",
        "aux_classifier.0": "aux_head.block.conv",
        "aux_classifier.1": "aux_head.block.bn",
        "aux_classifier.4": "aux_head.classifier",
    }
    for branch in range(4):
        table[f"classifier.0.convs.{branch}.0"] = f"head.aspp.branches.{branch}.conv"
        table[f"classifier.0.convs.{branch}.1"] = f"head.aspp.branches.{branch}.bn"
    return rename_prefixes(state, table)


register_remap("deeplabv3", torchvision_deeplabv3_to_cvzoo, name="torchvision:deeplabv3")

register_model(
    "deeplabv3_resnet50", DeepLabV3, task="segment", backbone="resnet50",
    reference="torchvision:deeplabv3_resnet50", input_size=(3, 520, 520),
)
register_model(
    "deeplabv3_resnet101", DeepLabV3, task="segment", backbone="resnet101",
    reference="torchvision:deeplabv3_resnet101", input_size=(3, 520, 520),
)
register_model("deeplabv3plus_resnet50", DeepLabV3Plus, task="segment", backbone="resnet50", input_size=(3, 512, 512))
register_model("deeplabv3plus_resnet101", DeepLabV3Plus, task="segment", backbone="resnet101",
               input_size=(3, 512, 512))
