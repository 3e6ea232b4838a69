"""SSDlite (Sandler et al. 2018, "MobileNetV2", sec. 6.2) with a MobileNet v3 Large backbone (Howard et al.
2019, "Searching for MobileNetV3", sec. 6.3): SSD whose predictors and extra layers are depthwise-separable.

As torchvision builds ``ssdlite320_mobilenet_v3_large`` (so that its checkpoints load and give the same
detections):

- images resized to 320 x 320, scaled to [-1, 1];
- the registered ``mobilenet_v3_large`` classifier with the "reduced tail" (its last three blocks and head
  conv at half width, Howard et al. Table 6: torchvision builds it so whenever the backbone starts untrained,
  its COCO checkpoint included) and batch-norm momentum 0.03;
- two maps from it (Howard et al. sec. 6.3): the expansion of the last stride-2 block (stride 16, 672
  channels) and the head conv (stride 32), then four extra blocks (1x1 squeeze, 3x3 depthwise stride 2,
  1x1 expand, all with batch norm and ReLU6) down to 512, 256, 256, 128 channels;
- predictors: 3x3 depthwise conv + batch norm + ReLU6, then a 1x1 conv;
- default boxes on the six maps (20, 10, 5, 3, 2, 1 cells) with ratios 2 and 3 everywhere, scales from
  0.2 to 0.95; inference keeps scores above 0.001, 300 candidates per class, NMS 0.55, 300 per image.

Matching, loss and decoding are SSD's (:class:`~cvzoo.models.detection.ssd.SSD`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.backbones import create_backbone
from cvzoo.models.classification.mobilenet_v3 import MOBILENET_V3_LARGE
from cvzoo.models.detection.fpn_backbone import (
    drop_classifier,
    freeze_stages,
    mobilenet_v3_stages,
    strided_blocks,
)
from cvzoo.models.detection.ssd import SSD, SSD_AUGMENT_KEYS, SSD_AUGMENT_OFF, SSDHead
from cvzoo.models.registry import register_model

# torchvision's SSDlite reference (references/detection: 600 epochs, SGD lr 0.15 for 24 images x 8 GPUs,
# momentum 0.9, weight decay 4e-5, cosine decay after 5 linear warm-up epochs from lr x 0.001, "ssdlite"
# augmentation = IoU crop + flip, no photometric distortion or zoom out). On one device: 24 images per
# batch, lr scaled linearly with the batch (0.15 * 24 / 192 = 0.01875).
SSDLITE_RECIPE: dict[str, Any] = {
    "data.batch_size": 24,
    "optim.name": "sgd",
    "optim.lr": 0.01875,
    "optim.momentum": 0.9,
    "optim.nesterov": False,
    "optim.weight_decay": 4e-5,
    "train.epochs": 600,
    "train.ema": False,
    "train.nominal_batch_size": 0,
    "scheduler.name": "cosine",
    "scheduler.warmup_epochs": 5.0,
    "scheduler.warmup_start_factor": 0.001,
    **SSD_AUGMENT_OFF,
    "detect.augment.photometric": 0.0,
    "detect.augment.zoom_out": 0.0,
    "detect.augment.iou_crop": 1.0,
    "detect.augment.hflip": 0.5,
}

# MobileNet v3 Large with its last three blocks at half width (C5 "reduced tail": 160 -> 80 channels,
# 960 -> 480 expanded); the head conv is then 6 x 80 = 480 wide.
MOBILENET_V3_LARGE_REDUCED_TAIL = MOBILENET_V3_LARGE[:-3] + (
    (5, 672, 80, True, "hswish", 2),
    (5, 480, 80, True, "hswish", 1),
    (5, 480, 80, True, "hswish", 1),
)


def normal_init(module: nn.Module, std: float = 0.03) -> None:
    """N(0, 0.03) conv weights, zero biases: torchvision's initialisation of SSDlite's untrained layers."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def _relu6_conv(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1,
                groups: int = 1) -> ConvNormAct:
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, groups=groups, act_layer=nn.ReLU6,
                       norm_layer=partial(nn.BatchNorm2d, eps=0.001, momentum=0.03))


def extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 to half ``out_channels``, 3x3 depthwise stride 2, 1x1 to ``out_channels`` (each BN + ReLU6)."""
    middle = out_channels // 2
    return nn.Sequential(_relu6_conv(in_channels, middle), _relu6_conv(middle, middle, 3, 2, groups=middle),
                         _relu6_conv(middle, out_channels))


def lite_predictor(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 depthwise conv (BN + ReLU6), then a 1x1 conv to the predictions."""
    return nn.Sequential(_relu6_conv(in_channels, in_channels, 3, groups=in_channels),
                         nn.Conv2d(in_channels, out_channels, 1))


class MobileNetV3Extractor(nn.Module):
    """MobileNet v3 Large -> SSDlite's six maps (strides 16, 32, 64, 128, 256, 512; 20 .. 1 cells at 320 px).

    ``body`` is the registered classifier without its classification head; its last strided block
    ``body.blocks[c4]`` is split after its expansion conv, whose output is the first map.

    Args:
        weights: local checkpoint of the ``mobilenet_v3_large`` classifier (full width: ``reduced_tail``
            False).
        trainable_layers: stages that train, counted from the last (0..6).
        reduced_tail: the last three blocks at half width.
        in_channels: image channels.
    """

    def __init__(self, weights: str | None = None, trainable_layers: int = 6, reduced_tail: bool = True,
                 in_channels: int = 3) -> None:
        super().__init__()
        settings = MOBILENET_V3_LARGE_REDUCED_TAIL if reduced_tail else MOBILENET_V3_LARGE
        body = create_backbone("mobilenet_v3_large", in_channels, weights, settings=settings,
                               last_channels=640 if reduced_tail else 1280)
        drop_classifier(body)
        for module in body.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.momentum = 0.03
        if weights is None:
            normal_init(body)
        freeze_stages(body, mobilenet_v3_stages(body), trainable_layers)
        self.body = body
        self.c4 = strided_blocks(body)[-1]
        if body.blocks[self.c4].use_residual:
            raise ValueError("the last strided MobileNet block must not be residual")
        widths = (512, 256, 256, 128)
        channels = [body.head_conv.out_channels, *widths]
        self.extra = nn.ModuleList(extra_block(cin, cout) for cin, cout in zip(channels, widths))
        normal_init(self.extra)
        self.out_channels = [body.blocks[self.c4].expand.out_channels, *channels]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        body = self.body
        x = body.stem(x)
        for block in body.blocks[: self.c4]:
            x = block(x)
        split = body.blocks[self.c4]
        x = split.expand(x)
        maps = [x]
        x = split.project(split.se(split.depthwise(x)))
        for block in body.blocks[self.c4 + 1:]:
            x = block(x)
        x = body.head_conv(x)
        maps.append(x)
        for block in self.extra:
            x = block(x)
            maps.append(x)
        return maps


class SSDLite(SSD):
    """SSDlite320 with a MobileNet v3 Large backbone (torchvision's ``ssdlite320_mobilenet_v3_large``).

    Arguments as :class:`~cvzoo.models.detection.ssd.SSD`, with SSDlite's defaults, plus:
        reduced_tail: the backbone's last blocks at half width (torchvision's choice for an untrained
            backbone and for its COCO checkpoint); a full-width ImageNet checkpoint needs False.
    """

    default_recipe: ClassVar[dict[str, Any]] = SSDLITE_RECIPE
    recipe_name: ClassVar[str] = "torchvision SSDlite"
    augment_keys: ClassVar[tuple[str, ...]] = SSD_AUGMENT_KEYS

    def __init__(
        self,
        num_classes: int = 90,
        backbone_weights: str | None = None,
        trainable_backbone_layers: int | None = None,
        fine_tune: bool = False,
        reduced_tail: bool = True,
        size: tuple[int, int] = (320, 320),
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.5, 0.5, 0.5),
        aspect_ratios: Sequence[Sequence[float]] = ((2.0, 3.0),) * 6,
        min_ratio: float = 0.2,
        max_ratio: float = 0.95,
        score_thresh: float = 0.001,
        nms_thresh: float = 0.55,
        detections_per_img: int = 300,
        topk_candidates: int = 300,
        iou_thresh: float = 0.5,
        positive_fraction: float = 0.25,
        in_channels: int = 3,
    ) -> None:
        self.reduced_tail = reduced_tail
        super().__init__(num_classes, backbone_weights, trainable_backbone_layers, fine_tune, size, mean, std,
                         aspect_ratios, None, None, min_ratio, max_ratio, score_thresh, nms_thresh,
                         detections_per_img, topk_candidates, iou_thresh, positive_fraction, in_channels)

    def build_backbone(self, weights: str | None, trainable_layers: int | None, trained: bool,
                       in_channels: int) -> nn.Module:
        return MobileNetV3Extractor(weights, 6 if trainable_layers is None else trainable_layers, self.reduced_tail,
                                    in_channels)

    def build_head(self, in_channels: Sequence[int], boxes_per_cell: Sequence[int], num_logits: int) -> nn.Module:
        head = SSDHead(in_channels, boxes_per_cell, num_logits, predictor=lite_predictor)
        normal_init(head)
        return head


register_model("ssdlite320_mobilenet_v3_large", SSDLite, reference="torchvision:ssdlite320_mobilenet_v3_large",
               task="detect", input_size=(3, 320, 320))
