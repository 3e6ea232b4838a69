"""YOLOv5-style detectors: CSP-Darknet with C3 blocks and SPPF, a PAN neck, anchors with the YOLOv4/v5
grid-sensitive decoding.

Compared with YOLOv3 (Bochkovskiy et al. 2020 and the YOLOv5 design): CSP blocks (C3) and SiLU
everywhere, SPPF at the end of the backbone, a PAN neck (top-down then bottom-up), boxes decoded as
``b_xy = (2 sigmoid(t_xy) - 0.5 + c_xy) s`` and ``b_wh = (2 sigmoid(t_wh))^2 p_wh``, several positive
anchors per object (size ratio within 4, centre cell plus two neighbours), CIoU box loss and an
IoU-valued objectness target balanced per level. Sizes n/s/m/l/x scale one layout by depth and width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from cvzoo.models.detection.darknet import CSPDarknet, yolo_backbone
from cvzoo.models.detection.yolo_common import C3, conv_bn_act, scale_depth, scale_width
from cvzoo.models.detection.yolo_loss import YoloAnchorLoss
from cvzoo.models.detection.yolov3 import COCO_ANCHORS, AnchorYolo, anchors_tensor
from cvzoo.models.necks import PathAggregationNetwork
from cvzoo.models.registry import register_model

STRIDES = (8, 16, 32)


class YOLOv5(AnchorYolo):
    """YOLOv5 (v6.0+ layout) at a given depth and width multiple.

    Args:
        num_classes: ``K`` (80 for COCO).
        depth_multiple: scales the number of bottlenecks per C3 block (base 3, 6, 9, 3 in the backbone,
            3 in the neck).
        width_multiple: scales every channel count (base 64 ... 1024).
        in_channels: image channels.
        anchors: per level flat ``(w, h, ...)`` pixels (default: the COCO anchors).
        backbone: name of a registered classifier to use instead of CSP-Darknet (e.g. ``"resnet50"``).
        backbone_weights: local checkpoint for the backbone (loaded with ``strict=False``).
        loss_options: keyword arguments of :class:`YoloAnchorLoss` (gains, ``anchor_t``, ``balance``).
    """

    def __init__(
        self,
        num_classes: int = 80,
        depth_multiple: float = 0.33,
        width_multiple: float = 0.25,
        in_channels: int = 3,
        anchors: Sequence[Sequence[float]] | None = None,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        loss_options: Mapping[str, Any] | None = None,
    ) -> None:
        channels = [scale_width(c, width_multiple) for c in (256, 512, 1024)]

        def own_backbone() -> CSPDarknet:
            return CSPDarknet("c3", depth_multiple, width_multiple, None, (3, 6, 9, 3), 6, in_channels=in_channels)

        body = yolo_backbone(own_backbone, STRIDES, channels, backbone, backbone_weights, in_channels)
        neck = PathAggregationNetwork(
            channels, channels, partial(C3, shortcut=False), scale_depth(3, depth_multiple),
            conv=conv_bn_act, lateral_convs=True,
        )
        criterion = YoloAnchorLoss(num_classes, STRIDES, assigner="v5", **dict(loss_options or {}))
        super().__init__(body, neck, anchors_tensor(anchors or COCO_ANCHORS), STRIDES, num_classes, True, criterion)


_DETECT = {"task": "detect", "input_size": (3, 640, 640)}
register_model("yolov5n", YOLOv5, depth_multiple=0.33, width_multiple=0.25, **_DETECT)
register_model("yolov5s", YOLOv5, depth_multiple=0.33, width_multiple=0.50, **_DETECT)
register_model("yolov5m", YOLOv5, depth_multiple=0.67, width_multiple=0.75, **_DETECT)
register_model("yolov5l", YOLOv5, depth_multiple=1.00, width_multiple=1.00, **_DETECT)
register_model("yolov5x", YOLOv5, depth_multiple=1.33, width_multiple=1.25, **_DETECT)
