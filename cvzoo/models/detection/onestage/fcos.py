"""FCOS (Tian et al. 2019, "FCOS: Fully Convolutional One-Stage Object Detection"): an anchor-free detector.

Every location of P3-P7 predicts ``K`` sigmoid class scores, its distances ``(l, t, r, b)`` to the four
sides of its object (in units of the level's size, ReLU'd so they stay non-negative) and a centre-ness
logit; the detection score is ``sqrt(class score * centre-ness)``. A location is a positive of an object
when it lies within 1.5 strides of the object's centre and inside the box ("center sampling", Tian et al.
2020, the journal version), and its largest distance falls in its level's range (P3 up to 64 px, P4 64-128,
..., P7 beyond 512; sec. 3.2); an ambiguous location takes the smallest object. Losses: focal loss on the
classes, GIoU on the boxes and binary cross-entropy on the centre-ness of the positives, each divided by
the number of positives in the batch.

As torchvision builds ``fcos_resnet50_fpn``: ResNet-50 (frozen batch norm when fine-tuned), FPN on C3-C5
with P6 from P5, GroupNorm heads whose convs keep their bias, the regression branch also predicting the
centre-ness. The locations are torchvision's: the centres of one stride-sized "anchor" per cell, that is the
cells' top-left corners (``i * stride``), not their centres. Checkpoints load through the ``torchvision:fcos``
remap (:mod:`.remap`); labels need no shift (COCO: ``num_classes=91``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.losses import iou_loss, sigmoid_focal_loss
from cvzoo.models.detection.one_pass import DetectSettings
from cvzoo.models.detection.onestage.common import PYRAMID_STRIDES, HeadBranch, OneStageDetector, prior_bias
from cvzoo.models.registry import register_model
from cvzoo.ops import AnchorGenerator, bbox2dist, dist2bbox, fcos_assign, fcos_centerness, fcos_size_ranges

Target = dict[str, torch.Tensor]


class FCOSHead(nn.Module):
    """Classification branch (``K`` logits) and regression branch (4 distances + 1 centre-ness logit), each
    four 3x3 conv + GroupNorm(32) + ReLU deep (convs with bias, as torchvision's), shared by all levels.

    Outputs per level ``cls_logits [B, K, H, W]``, ``bbox_regression [B, 4, H, W]`` (ReLU'd) and
    ``bbox_ctrness [B, 1, H, W]``.
    """

    def __init__(self, channels: int, num_classes: int, num_convs: int = 4) -> None:
        super().__init__()
        self.classification = HeadBranch(channels, num_convs, {"cls_logits": num_classes}, True, conv_bias=True)
        self.regression = HeadBranch(channels, num_convs, {"bbox_regression": 4, "bbox_ctrness": 1}, True,
                                     conv_bias=True)
        nn.init.constant_(self.classification.predictions["cls_logits"].bias, prior_bias(0.01))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        outputs = {**self.classification(features), **self.regression(features)}
        outputs["bbox_regression"] = [F.relu(x) for x in outputs["bbox_regression"]]
        return outputs


class FCOS(OneStageDetector):
    """FCOS with a ResNet + FPN backbone (P3-P7).

    Args:
        num_classes: object classes ``K`` (91 fits torchvision's COCO checkpoints).
        backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm, fine_tune, in_channels:
            see :class:`~cvzoo.models.detection.onestage.common.OneStageDetector`.
        min_size, max_size: the resize (shorter side, cap on the longer).
        center_sampling_radius: the centre region's half-size in strides (1.5).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference (0.2, 0.6, 100, 1000).
    """

    recipe_name: ClassVar[str] = "torchvision FCOS"

    def __init__(
        self,
        num_classes: int = 91,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        trainable_backbone_layers: int | None = None,
        frozen_batch_norm: bool | None = None,
        fine_tune: bool = False,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        in_channels: int = 3,
    ) -> None:
        # One stride-sized square per cell: its centre is the location, its side the unit of the distances.
        anchors = AnchorGenerator(tuple((s,) for s in PYRAMID_STRIDES), ((1.0,),) * len(PYRAMID_STRIDES))
        super().__init__(
            num_classes, lambda channels: FCOSHead(channels, num_classes),
            {"cls_logits": num_classes, "bbox_regression": 4, "bbox_ctrness": 1}, anchors, backbone, backbone_weights,
            trainable_backbone_layers, frozen_batch_norm, fine_tune, "p6p7", min_size, max_size,
            DetectSettings(score_thresh, nms_thresh, detections_per_img), topk_candidates, in_channels,
        )
        self.center_sampling_radius = center_sampling_radius

    def level_scores(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sqrt(torch.sigmoid(outputs["cls_logits"]) * torch.sigmoid(outputs["bbox_ctrness"]))

    def decode(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Distances in units of the anchor's side -> xyxy boxes around the anchor's centre."""
        sides = anchors[..., 2:] - anchors[..., :2]
        return dist2bbox(regression * sides.repeat(1, 2), (anchors[..., :2] + anchors[..., 2:]) / 2)

    def compute_loss(self, outputs: dict[str, torch.Tensor], anchors: torch.Tensor, counts: Sequence[int],
                     targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """``{"classification", "bbox_regression", "bbox_ctrness"}``, each a sum over the batch divided by the
        batch's positives (at least 1)."""
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        sides = anchors[:, 2] - anchors[:, 0]
        # Level l regresses max(l, t, r, b) in (4 s_l, 8 s_l) for its side s_l, P3 from 0, P7 without bound.
        ranges = fcos_size_ranges(sides, PYRAMID_STRIDES, tuple(4.0 * s for s in PYRAMID_STRIDES[1:]))
        gt_boxes, gt_classes = [], []
        for target in targets:
            matched = fcos_assign(centres, sides, target["boxes"], ranges, self.center_sampling_radius)
            classes = torch.full_like(matched, -1)
            boxes = torch.zeros(len(matched), 4, device=anchors.device)
            if len(target["boxes"]):
                positive = matched >= 0
                classes[positive] = target["labels"][matched[positive]]
                boxes[positive] = target["boxes"][matched[positive]]
            gt_boxes.append(boxes)
            gt_classes.append(classes)
        boxes, classes = torch.stack(gt_boxes), torch.stack(gt_classes)  # [B, N, 4], [B, N]
        positive = classes >= 0
        num_positive = max(1, int(positive.sum()))
        one_hot = torch.zeros_like(outputs["cls_logits"])
        one_hot[positive, classes[positive]] = 1.0
        loss_cls = sigmoid_focal_loss(outputs["cls_logits"], one_hot, reduction="sum")
        batch_anchors = anchors.expand(len(targets), -1, -1)[positive]
        predicted = self.decode(outputs["bbox_regression"][positive], batch_anchors)
        loss_box = iou_loss(predicted, boxes[positive], "giou", reduction="sum")
        # Centre-ness target (sec. 3.3) from the distances in units of the side, as torchvision computes it.
        distances = bbox2dist((batch_anchors[:, :2] + batch_anchors[:, 2:]) / 2, boxes[positive])
        target_ctrness = fcos_centerness(distances / (batch_anchors[:, 2:] - batch_anchors[:, :2]).repeat(1, 2))
        loss_ctrness = F.binary_cross_entropy_with_logits(outputs["bbox_ctrness"][positive][:, 0], target_ctrness,
                                                          reduction="sum")
        return {"classification": loss_cls / num_positive, "bbox_regression": loss_box / num_positive,
                "bbox_ctrness": loss_ctrness / num_positive}


_DETECT: dict[str, Any] = {"task": "detect", "input_size": (3, 800, 800)}
register_model("fcos_resnet50_fpn", FCOS, reference="torchvision:fcos_resnet50_fpn", **_DETECT)
