"""Fully convolutional networks (Long, Shelhamer & Darrell, 2015) and torchvision's dilated FCN-ResNet.

**FCN-32s/16s/8s** ("skip" architecture, §4.2): the classifier of VGG16 is "convolutionalized" (fc6 as
a 7x7 conv over pool5, fc7 as a 1x1 conv) and a 1x1 ``score`` layer predicts class scores at stride 32.

* FCN-32s upsamples those scores 32x in one step;
* FCN-16s adds a 1x1 score layer on pool4, fuses it with the 2x-upsampled stride-32 scores and
  upsamples the sum 16x;
* FCN-8s does the same once more with pool3 and upsamples 8x.

Upsampling layers are transposed convolutions initialised to bilinear interpolation; the 2x ones
learn, the final one stays fixed, as in the paper ("the final layer deconvolutional filters are fixed to
bilinear interpolation, while intermediate upsampling layers are initialized to bilinear upsampling,
and then learned"). The skip score layers start at zero so that a net initialised from its coarser
parent begins with the parent's output. The paper's 100-pixel input padding (and the crops it needs) is
replaced by a padded fc6 (``padding = 3``), which keeps every map aligned for inputs that are multiples of
32; for other sizes the coarse map is zero-padded to the skip map (as U-Net does) and the result
resized to the input.

**FCN-ResNet50/101** (torchvision): a ResNet with the strides of layer3/layer4 replaced by dilation
(output stride 8), a ``FCNHead`` on layer4 and, optionally, an auxiliary ``FCNHead`` on layer3;
logits are bilinearly resized to the input. torchvision state dicts load through the ``torchvision:fcn``
remap registered below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.models.classification.vgg import VGG
from cvzoo.models.registry import register_model
from cvzoo.models.segmentation.base import (
    FCNHead,
    Segmenter,
    bilinear_upsampler,
    drop_head,
    feature_backbone,
    rename_prefixes,
    stage_index,
    upsample_to,
)
from cvzoo.models.weights import StateDict, register_remap

VARIANT_STRIDES = {32: (), 16: (16,), 8: (16, 8)}


class ConvolutionalizedHead(nn.Module):
    """fc6 (``kernel`` x ``kernel`` conv) + ReLU + dropout, fc7 (1x1) + ReLU + dropout, 1x1 ``score``.

    ``from_vgg`` reuses VGG's fully connected layers: a linear layer over the flattened 7x7 pool5 map is
    the 7x7 convolution with the same weights (``torch.flatten`` orders them channel-major), so an
    ImageNet VGG initialises fc6/fc7 exactly as in the paper.
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int = 4096, kernel_size: int = 7,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, hidden_channels, kernel_size, padding=kernel_size // 2)
        self.fc7 = nn.Conv2d(hidden_channels, hidden_channels, 1)
        self.act = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self.score = nn.Conv2d(hidden_channels, num_classes, 1)
        for conv in (self.fc6, self.fc7):
            nn.init.normal_(conv.weight, 0.0, 0.01)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.score.weight)  # the paper zero-initialises the class scoring layers
        nn.init.zeros_(self.score.bias)

    @torch.no_grad()
    def load_vgg_classifier(self, vgg: VGG) -> bool:
        """Copy VGG's fc6/fc7 into the convs when their shapes fit; returns whether it did."""
        fc6, fc7 = vgg.classifier[0], vgg.classifier[3]
        if not (isinstance(fc6, nn.Linear) and isinstance(fc7, nn.Linear)):
            return False
        if fc6.weight.numel() != self.fc6.weight.numel() or fc7.weight.numel() != self.fc7.weight.numel():
            return False
        self.fc6.weight.copy_(fc6.weight.view_as(self.fc6.weight))
        self.fc6.bias.copy_(fc6.bias)
        self.fc7.weight.copy_(fc7.weight.view_as(self.fc7.weight))
        self.fc7.bias.copy_(fc7.bias)
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.act(self.fc6(x)))
        x = self.dropout(self.act(self.fc7(x)))
        return self.score(x)


def _pad_to(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Zero-pad (or crop) ``x`` on the bottom/right to spatial ``size``."""
    dh, dw = size[-2] - x.shape[-2], size[-1] - x.shape[-1]
    return x if dh == 0 and dw == 0 else F.pad(x, [0, dw, 0, dh])


class FCN(Segmenter):
    """FCN-32s / 16s / 8s on a classification backbone (VGG16 in the paper).

    Args:
        num_classes: classes including background.
        variant: 32, 16 or 8 (the stride of the finest skip used).
        backbone: registered classifier with stages at strides 8, 16 and 32 (``vgg16``).
        backbone_weights: local ImageNet checkpoint of the backbone; for VGG it also fills fc6/fc7.
        in_channels: image channels.
        hidden_channels, head_kernel: width of fc6/fc7 and the kernel of fc6 (4096, 7 for VGG).
        dropout: dropout after fc6 and fc7.
    """

    def __init__(
        self,
        num_classes: int = 21,
        variant: int = 8,
        backbone: str = "vgg16",
        backbone_weights: str | None = None,
        in_channels: int = 3,
        hidden_channels: int = 4096,
        head_kernel: int = 7,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in VARIANT_STRIDES:
            raise ValueError(f"FCN variant must be 32, 16 or 8, got {variant}")
        self.num_classes, self.variant = num_classes, variant
        self.backbone = feature_backbone(backbone, 32, in_channels, backbone_weights, keep_head=True)
        infos = self.backbone.feature_info
        self.top_index = stage_index(infos, 32, f"FCN-{variant}s")
        self.head = ConvolutionalizedHead(infos[self.top_index].channels, num_classes, hidden_channels,
                                          head_kernel, dropout)
        if isinstance(self.backbone.body, VGG):
            self.head.load_vgg_classifier(self.backbone.body)
        # The convolutionalized copies replace VGG's fully connected layers, which are never run.
        drop_head(self.backbone)
        skip_strides = VARIANT_STRIDES[variant]
        self.skip_indices = [stage_index(infos, s, f"FCN-{variant}s") for s in skip_strides]
        self.skip_scores = nn.ModuleList(nn.Conv2d(infos[i].channels, num_classes, 1) for i in self.skip_indices)
        for conv in self.skip_scores:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.skip_upsamplers = nn.ModuleList(bilinear_upsampler(num_classes, 2) for _ in skip_strides)
        self.final_upsampler = bilinear_upsampler(num_classes, variant, learnable=False)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        scores = self.head(features[self.top_index])
        for index, score_layer, upsample in zip(self.skip_indices, self.skip_scores, self.skip_upsamplers):
            skip = score_layer(features[index])
            scores = _pad_to(upsample(scores), skip.shape) + skip
        out = upsample_to(self.final_upsampler(scores), images.shape[-2:])
        return {"out": out}


class DilatedFCN(Segmenter):
    """torchvision's FCN-ResNet: dilated backbone (output stride 8), ``FCNHead``, optional aux head.

    Args:
        num_classes: classes including background.
        backbone: registered classifier taking ``replace_stride_with_dilation`` (ResNet family).
        backbone_weights: local ImageNet checkpoint of the backbone.
        aux_head: add the auxiliary ``FCNHead`` on the second-to-last stage (``"aux"`` output).
        output_stride: 8 (torchvision), 16 or 32.
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        aux_head: bool = True,
        output_stride: int = 8,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = feature_backbone(backbone, output_stride, in_channels, backbone_weights)
        channels = self.backbone.channels
        self.head = FCNHead(channels[-1], num_classes)
        self.aux_head = FCNHead(channels[-2], num_classes) if aux_head else None

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        size = images.shape[-2:]
        outputs = {"out": upsample_to(self.head(features[-1]), size)}
        if self.aux_head is not None:
            outputs["aux"] = upsample_to(self.aux_head(features[-2]), size)
        return outputs


# ------------------------------------------------------------------------------- torchvision remapping
def torchvision_fcn_to_cvzoo(state: StateDict) -> StateDict:
    """torchvision ``fcn_resnet*`` keys -> ``DilatedFCN`` keys.

    ``backbone.<resnet key>`` -> ``backbone.body.<resnet key>`` (ResNet names already match);
    ``classifier.{0,1,4}`` / ``aux_classifier.{0,1,4}`` (conv, BN, classifier conv of the Sequential
    head) -> ``head.block.conv``, ``head.block.bn``, ``head.classifier`` (``aux_head.*``).
    """
    if "classifier.4.weight" not in state or "backbone.conv1.weight" not in state:
        raise KeyError("not a torchvision FCN state dict (no classifier.4 / backbone.conv1)")
    table = {"backbone": "backbone.body"}
    for src, dst in (("classifier", "head"), ("aux_classifier", "aux_head")):
        table.update({f"{src}.0": f"{dst}.block.conv", f"{src}.1": f"{dst}.block.bn", f"{src}.4": f"{dst}.classifier"})
    return rename_prefixes(state, table)


register_remap("dilatedfcn", torchvision_fcn_to_cvzoo, name="torchvision:fcn")

register_model("fcn32s", FCN, task="segment", variant=32, input_size=(3, 512, 512))
register_model("fcn16s", FCN, task="segment", variant=16, input_size=(3, 512, 512))
register_model("fcn8s", FCN, task="segment", variant=8, input_size=(3, 512, 512))
register_model(
    "fcn_resnet50", DilatedFCN, task="segment", backbone="resnet50", reference="torchvision:fcn_resnet50",
    input_size=(3, 520, 520),
)
register_model(
    "fcn_resnet101", DilatedFCN, task="segment", backbone="resnet101", reference="torchvision:fcn_resnet101",
    input_size=(3, 520, 520),
)
