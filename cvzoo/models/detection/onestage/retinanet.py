"""RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection"): a one-stage anchor detector.

Nine anchors per location on P3-P7 (sizes ``2^(k/3) * 32 * 2^l`` for three octave scales ``k``, ratios 1:2,
1:1, 2:1; sec. 4 "Anchors"), a classification branch (``A * K`` sigmoid logits) and a box branch (``A * 4``
R-CNN deltas, unit weights), each four 3x3 convs deep and shared by all levels. Training labels anchors by
IoU (>= 0.5 object, < 0.4 background, in between ignored, plus every object's best anchors) and sums the
focal loss over all non-ignored anchors, normalised by the number of positives (sec. 3.3, 4.1).

Variants as torchvision builds them:

- ``retinanet_resnet50_fpn``: ResNet-50 (frozen batch norm when fine-tuned), FPN on C3-C5 with P6 from P5,
  plain conv head, L1 loss on the deltas;
- ``retinanet_resnet50_fpn_v2`` (the improved recipe of Zhang et al. 2020, "Bridging the Gap Between
  Anchor-based and Anchor-free Detection", as torchvision trained it): P6 from C5 (as the paper), GroupNorm
  in the head, GIoU loss on the decoded boxes, trainable batch norm.

Their torchvision checkpoints load through the ``torchvision:retinanet`` remap (:mod:`.remap`). Labels need
no shift: the classifier has no background class, so torchvision's label is ours (COCO: ``num_classes=91``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.losses import iou_loss, sigmoid_focal_loss
from cvzoo.models.detection.one_pass import DetectSettings
from cvzoo.models.detection.onestage.common import (
    ONE_STAGE_RECIPE,
    PYRAMID_STRIDES,
    HeadBranch,
    OneStageDetector,
    prior_bias,
)
from cvzoo.models.registry import register_model
from cvzoo.ops import AnchorGenerator, DeltaBoxCoder, IoUMatcher, box_iou

Target = dict[str, torch.Tensor]


def retinanet_anchor_sizes(base_sizes: Sequence[int] = (32, 64, 128, 256, 512)) -> tuple[tuple[int, ...], ...]:
    """Per level the three octave-scale sizes ``s, s 2^(1/3), s 2^(2/3)`` (sec. 4), truncated to whole pixels
    as torchvision's ``int()`` does (32 -> 32, 40, 50)."""
    return tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in base_sizes)


class RetinaNetHead(nn.Module):
    """The classification and box branches (:class:`HeadBranch`), ``A`` anchors per location.

    Outputs per level ``cls_logits [B, A K, H, W]`` and ``bbox_regression [B, A 4, H, W]``.
    """

    def __init__(self, channels: int, num_anchors: int, num_classes: int, group_norm: bool = False) -> None:
        super().__init__()
        self.classification = HeadBranch(channels, 4, {"cls_logits": num_anchors * num_classes}, group_norm)
        self.regression = HeadBranch(channels, 4, {"bbox_regression": num_anchors * 4}, group_norm)
        nn.init.constant_(self.classification.predictions["cls_logits"].bias, prior_bias(0.01))

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        return {**self.classification(features), **self.regression(features)}


class RetinaNet(OneStageDetector):
    """RetinaNet with a ResNet + FPN backbone (P3-P7).

    Args:
        num_classes: object classes ``K`` (91 fits torchvision's COCO checkpoints).
        backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm, fine_tune, in_channels:
            see :class:`~cvzoo.models.detection.onestage.common.OneStageDetector`.
        p6_from_c5: P6 from C5 (v2, the paper) instead of P5 (v1).
        group_norm: GroupNorm(32) in the head towers (v2).
        box_loss: ``"l1"`` on the deltas (v1) or ``"giou"`` on the decoded boxes (v2).
        min_size, max_size: the resize (shorter side, cap on the longer).
        anchor_sizes: per level the anchor sizes; aspect_ratios: ``h / w``, the same at every level.
        fg_iou_thresh, bg_iou_thresh: anchor labelling IoUs (0.5, 0.4).
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference (0.05, 0.5, 300, 1000).
    """

    recipe_name: ClassVar[str] = "torchvision RetinaNet"

    def __init__(
        self,
        num_classes: int = 91,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        trainable_backbone_layers: int | None = None,
        frozen_batch_norm: bool | None = None,
        fine_tune: bool = False,
        p6_from_c5: bool = False,
        group_norm: bool = False,
        box_loss: str = "l1",
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        anchor_sizes: Sequence[Sequence[float]] = retinanet_anchor_sizes(),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
        topk_candidates: int = 1000,
        in_channels: int = 3,
    ) -> None:
        if box_loss not in ("l1", "giou"):
            raise ValueError(f"box_loss must be 'l1' or 'giou', got {box_loss!r}")
        if len(anchor_sizes) != len(PYRAMID_STRIDES):
            raise ValueError(f"anchor_sizes needs one entry per level P3-P7 (5), got {len(anchor_sizes)}")
        anchors = AnchorGenerator(anchor_sizes, [tuple(aspect_ratios)] * len(anchor_sizes))
        num_anchors = anchors.num_anchors_per_location()[0]
        super().__init__(
            num_classes, lambda channels: RetinaNetHead(channels, num_anchors, num_classes, group_norm),
            {"cls_logits": num_classes, "bbox_regression": 4}, anchors,
            backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm, fine_tune,
            "p6p7_c5" if p6_from_c5 else "p6p7", min_size, max_size,
            DetectSettings(score_thresh, nms_thresh, detections_per_img), topk_candidates, in_channels,
        )
        self.box_loss = box_loss
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.box_coder = DeltaBoxCoder((1.0, 1.0, 1.0, 1.0))

    def level_scores(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.sigmoid(outputs["cls_logits"])

    def decode(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        return self.box_coder.decode(regression, anchors)

    def compute_loss(self, outputs: dict[str, torch.Tensor], anchors: torch.Tensor, counts: Sequence[int],
                     targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """``{"classification", "bbox_regression"}``: per image the focal loss over the non-ignored anchors and
        the box loss over the positives, each divided by the image's positives (at least 1), then the mean
        over the images (torchvision's normalisation)."""
        classification, regression = [], []
        for logits, deltas, target in zip(outputs["cls_logits"], outputs["bbox_regression"], targets):
            matched = self.matcher(box_iou(target["boxes"], anchors))
            positive = matched >= 0
            num_positive = max(1, int(positive.sum()))
            gt_classes = torch.zeros_like(logits)
            gt_classes[positive, target["labels"][matched[positive]]] = 1.0
            valid = matched != IoUMatcher.IGNORE
            classification.append(sigmoid_focal_loss(logits[valid], gt_classes[valid], reduction="sum") / num_positive)
            gt_boxes = target["boxes"][matched[positive]]
            if self.box_loss == "l1":
                box = F.l1_loss(deltas[positive], self.box_coder.encode(gt_boxes, anchors[positive]), reduction="sum")
            else:
                box = iou_loss(self.decode(deltas[positive], anchors[positive]), gt_boxes, "giou", reduction="sum")
            regression.append(box / num_positive)
        return {"classification": sum(classification) / len(targets),
                "bbox_regression": sum(regression) / max(1, len(targets))}


# torchvision trained the v2 weights with AdamW, lr 1e-4 for 16 images, weight decay 0.05 (none on norms and
# biases), 26 epochs with drops at 16 and 22 (pytorch/vision#5756). For one device: 4 images, lr scaled
# linearly as the SGD recipes are. Its "multiscale" augmentation (a random shorter side before the model's
# own resize back to 800) and synchronised batch norm are not reproduced.
RETINANET_V2_RECIPE: dict[str, Any] = {**ONE_STAGE_RECIPE, "optim.name": "adamw", "optim.lr": 2.5e-5,
                                       "optim.weight_decay": 0.05, "optim.no_decay_norm_bias": True}


class RetinaNetV2(RetinaNet):
    """:class:`RetinaNet` as the v2 variant is trained (its own recipe); the architecture is in the kwargs."""

    default_recipe: ClassVar[dict[str, Any]] = RETINANET_V2_RECIPE
    recipe_name: ClassVar[str] = "torchvision RetinaNet v2"


# The v2 architecture: P6 from C5, GroupNorm head, GIoU box loss, trainable batch norm.
V2_KWARGS: dict[str, Any] = {"p6_from_c5": True, "group_norm": True, "box_loss": "giou", "frozen_batch_norm": False}
_DETECT: dict[str, Any] = {"task": "detect", "input_size": (3, 800, 800)}
register_model("retinanet_resnet50_fpn", RetinaNet, reference="torchvision:retinanet_resnet50_fpn", **_DETECT)
register_model("retinanet_resnet50_fpn_v2", RetinaNetV2, **V2_KWARGS, reference="torchvision:retinanet_resnet50_fpn_v2",
               **_DETECT)
