"""YOLOv3 (Redmon & Farhadi 2018, "YOLOv3: An Incremental Improvement") and the anchor-based YOLO detector
that YOLOv5 shares.

Darknet-53 gives maps at strides 8/16/32; the FPN-style neck (:class:`~cvzoo.models.necks.YoloV3FPN`)
merges them top-down by concatenation; a 1x1 conv per level predicts, for each of 3 anchors per cell,
``(t_x, t_y, t_w, t_h, objectness, K class logits)``. Boxes decode as ``b_xy = (sigmoid(t_xy) + c_xy) s``
and ``b_wh = p_wh exp(t_wh)`` with the nine k-means COCO anchors (three per level).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cvzoo.models.detection.darknet import Darknet53, DarknetTiny, YoloBackbone, yolo_backbone
from cvzoo.models.detection.yolo_common import LEAKY_RELU, SPP, AnchorHead, conv_bn_act
from cvzoo.models.detection.yolo_family import YoloDetector
from cvzoo.models.detection.yolo_loss import YoloAnchorLoss
from cvzoo.models.necks import YoloV3FPN
from cvzoo.models.registry import register_model
from cvzoo.ops import box_convert, yolo_decode_v3, yolo_decode_v5, yolo_grid

# The nine COCO anchors of YOLOv3 (k-means on COCO boxes at 416 px), (w, h) pixels per level, finest first.
COCO_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
# YOLOv3-tiny's six anchors for its stride-16 and stride-32 levels.
TINY_ANCHORS = ((10, 14, 23, 27, 37, 58), (81, 82, 135, 169, 344, 319))


def anchors_tensor(anchors: Sequence[Sequence[float]]) -> torch.Tensor:
    """Per-level flat ``(w1, h1, w2, h2, ...)`` lists -> ``[L, A, 2]`` float tensor."""
    rows = [list(map(float, level)) for level in anchors]
    if not rows or any(len(r) % 2 or len(r) != len(rows[0]) for r in rows):
        raise ValueError(f"anchors need the same even number of values on every level, got {anchors}")
    return torch.tensor(rows).view(len(rows), -1, 2)


def level_names(strides: Sequence[int]) -> list[str]:
    """Output keys: ``"p3"`` for stride 8, ``"p4"`` for 16, ``"p5"`` for 32 (FPN naming)."""
    return [f"p{int(stride).bit_length() - 1}" for stride in strides]


class AnchorYolo(YoloDetector):
    """An anchor-based YOLO detector: backbone -> neck -> :class:`AnchorHead`, with YOLOv3 or YOLOv5 rules.

    ``raw_outputs`` returns ``{"p3": [B, A, H3, W3, 5 + K], "p4": ..., "p5": ...}`` (raw logits; keys by
    level); ``decode`` turns them into ``[B, sum A H W, 4 + K]`` xyxy input pixels with class scores
    ``sigmoid(objectness) * sigmoid(class logit)``.

    Args:
        backbone: maps at ``strides``, finest first.
        neck: merges them; ``neck.out_channels`` gives the head's input channels.
        anchors: ``[L, A, 2]`` anchor (w, h) in pixels, finest level first.
        strides: stride of each level.
        num_classes: ``K``.
        grid_sensitive: YOLOv4/v5 decoding (True) or YOLOv3's (False).
        criterion: the training loss.
    """

    def __init__(
        self,
        backbone: YoloBackbone,
        neck: nn.Module,
        anchors: torch.Tensor,
        strides: Sequence[int],
        num_classes: int,
        grid_sensitive: bool,
        criterion: YoloAnchorLoss,
    ) -> None:
        super().__init__()
        if anchors.shape[0] != len(strides):
            raise ValueError(f"{len(strides)} levels but anchors for {anchors.shape[0]}")
        self.num_classes, self.strides, self.grid_sensitive = num_classes, tuple(strides), grid_sensitive
        self.backbone, self.neck = backbone, neck
        self.head = AnchorHead(neck.out_channels, anchors.shape[1], num_classes, strides)
        self.register_buffer("anchors", anchors.clone().float())
        self.criterion = criterion
        self.level_names = level_names(strides)

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, 3, H, W]`` (H, W multiples of the largest stride) -> raw predictions per level."""
        return dict(zip(self.level_names, self.head(self.neck(self.backbone(images)))))

    def compute_loss(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return self.criterion([outputs[name] for name in self.level_names], targets, self.anchors)

    def decode(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        decoder = yolo_decode_v5 if self.grid_sensitive else yolo_decode_v3
        results = []
        for level, name in enumerate(self.level_names):
            raw = outputs[name]
            height, width = raw.shape[2], raw.shape[3]
            grid = yolo_grid(height, width, raw.device, raw.dtype)[None, None]  # [1, 1, H, W, 2]
            anchors = self.anchors[level].to(raw.dtype)[None, :, None, None]  # [1, A, 1, 1, 2]
            boxes = box_convert(decoder(raw[..., :4], grid, anchors, self.strides[level]), "cxcywh", "xyxy")
            scores = torch.sigmoid(raw[..., 4:5]) * torch.sigmoid(raw[..., 5:])
            results.append(torch.cat((boxes, scores), dim=-1).flatten(1, 3))
        return torch.cat(results, dim=1)

    @torch.no_grad()
    def set_anchors(self, anchors: torch.Tensor | Sequence[Sequence[float]]) -> None:
        """Replace the anchors (e.g. by AutoAnchor's): ``[L * A, 2]`` or ``[L, A, 2]`` pixels.

        They are sorted by area and dealt out to the levels, smallest to the finest level.
        """
        new = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 2)
        if new.numel() != self.anchors.numel():
            raise ValueError(f"need {self.anchors.shape[0] * self.anchors.shape[1]} anchors, got {len(new)}")
        new = new[new.prod(dim=1).argsort()]
        self.anchors.copy_(new.view_as(self.anchors))


def _leaky_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Module:
    return conv_bn_act(in_channels, out_channels, kernel_size, stride, act_layer=LEAKY_RELU)


def _leaky_spp(in_channels: int, out_channels: int) -> nn.Module:
    return SPP(in_channels, out_channels, (5, 9, 13), act_layer=LEAKY_RELU)


class YOLOv3(AnchorYolo):
    """YOLOv3, YOLOv3-SPP and YOLOv3-tiny.

    YOLOv3: Darknet-53 at strides 8/16/32, conv sets of five convs (hidden 128/256/512), the nine COCO
    anchors. ``spp=True`` inserts an SPP block (5/9/13 pools) after the third conv of the stride-32 set
    (darknet's yolov3-spp.cfg). ``tiny=True``: the seven-conv tiny backbone and two levels (16/32).

    Args:
        num_classes: ``K`` (80 for COCO).
        in_channels: image channels.
        spp: YOLOv3-SPP.
        tiny: YOLOv3-tiny.
        anchors: per level flat ``(w, h, ...)`` pixels (default: the COCO anchors of the variant).
        backbone: name of a registered classifier to use instead of Darknet (e.g. ``"resnet50"``).
        backbone_weights: local checkpoint for the backbone (loaded with ``strict=False``).
        loss_options: keyword arguments of :class:`YoloAnchorLoss` (``box_loss="mse"``, gains, ...).
    """

    def __init__(
        self,
        num_classes: int = 80,
        in_channels: int = 3,
        spp: bool = False,
        tiny: bool = False,
        anchors: Sequence[Sequence[float]] | None = None,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        loss_options: Mapping[str, Any] | None = None,
    ) -> None:
        if tiny and spp:
            raise ValueError("YOLOv3: spp applies to the full model, not to tiny (its stride-32 set has one conv)")
        if tiny:
            strides, channels, default = (16, 32), (256, 1024), DarknetTiny
            hidden, num_convs, anchors = (128, 256), (0, 1), anchors or TINY_ANCHORS
        else:
            strides, channels, default = (8, 16, 32), (256, 512, 1024), Darknet53
            hidden, num_convs, anchors = (128, 256, 512), (5, 5, 5), anchors or COCO_ANCHORS

        def own_backbone() -> nn.Module:
            return default(num_classes=0, in_channels=in_channels)

        body = yolo_backbone(own_backbone, strides, channels, backbone, backbone_weights, in_channels)
        neck = YoloV3FPN(channels, hidden, num_convs, conv=_leaky_conv, spp=_leaky_spp if spp else None)
        criterion = YoloAnchorLoss(num_classes, strides, assigner="v3", **dict(loss_options or {}))
        super().__init__(body, neck, anchors_tensor(anchors), strides, num_classes, False, criterion)


_DETECT = {"task": "detect", "input_size": (3, 640, 640)}
register_model("yolov3", YOLOv3, **_DETECT)
register_model("yolov3_spp", YOLOv3, spp=True, **_DETECT)
register_model("yolov3_tiny", YOLOv3, tiny=True, **_DETECT)
