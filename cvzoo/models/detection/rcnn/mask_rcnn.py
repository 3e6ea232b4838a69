"""Mask R-CNN (He et al. 2017): Faster R-CNN with a parallel mask branch on the RoI features.

Training adds ``loss_mask`` over the positive sampled proposals (targets carry ``masks``: ``uint8 [N, H, W]``
in the image's pixels); ``predict`` returns ``Detections.masks``, each detection's class mask as float
probabilities ``[N, H, W]`` in the image's pixels (threshold at 0.5 for a binary mask). The v2 variant
(Li et al. 2021) adds batch norm to the mask head's convs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.models.detection.base import Detections
from cvzoo.models.detection.rcnn.faster_rcnn import V2_KWARGS, FasterRCNN, Target
from cvzoo.models.detection.rcnn.mask_head import MaskBranch, MaskHead, MaskPredictor, paste_masks
from cvzoo.models.detection.rcnn.poolers import MultiScaleRoIAlign
from cvzoo.models.detection.rcnn.roi_heads import SampledProposals
from cvzoo.models.detection.transform import resize_boxes
from cvzoo.models.registry import register_model


class MaskRCNN(FasterRCNN):
    """Faster R-CNN + mask branch.

    Args:
        mask_norm: batch norm in the mask head's convs (v2 recipe).
        **kwargs: :class:`FasterRCNN`'s arguments.
    """

    forwards_kwargs_to = FasterRCNN  # the registry checks **kwargs against FasterRCNN's arguments
    predicts_masks: ClassVar[bool] = True  # its detections carry masks; its training targets need "masks"

    def __init__(self, mask_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        channels = self.backbone.out_channels
        self.mask_branch = MaskBranch(
            MultiScaleRoIAlign(14, sampling_ratio=2),
            MaskHead(channels, 256, 4, nn.BatchNorm2d if mask_norm else None),
            MaskPredictor(256, 256, self.num_classes),
        )

    def extra_losses(self, features: Sequence[torch.Tensor], sampled: SampledProposals,
                     image_sizes: Sequence[tuple[int, int]], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        if any("masks" not in t for t in targets):
            raise ValueError("Mask R-CNN targets need 'masks' (uint8 [N, H, W] in the image's pixels)")
        boxes, matched = sampled.positives()
        return {"loss_mask": self.mask_branch.loss(features, boxes, matched, image_sizes, targets)}

    def to_detections(self, features: Sequence[torch.Tensor], raw: Sequence[Target],
                      resized: Sequence[tuple[int, int]], sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Boxes and pasted masks in each given image's pixels."""
        masks = self.mask_branch.predict(features, [r["boxes"] for r in raw], [r["labels"] for r in raw], resized)
        detections = []
        for r, image_masks, new, old in zip(raw, masks, resized, sizes):
            boxes = resize_boxes(r["boxes"], new, old)
            detections.append(Detections(boxes, r["scores"], r["labels"] - 1, paste_masks(image_masks, boxes, old)))
        return detections


_SEGMENT = {"task": "detect", "input_size": (3, 800, 800)}
register_model("maskrcnn_resnet50_fpn", MaskRCNN, reference="torchvision:maskrcnn_resnet50_fpn", **_SEGMENT)
register_model(
    "maskrcnn_resnet50_fpn_v2", MaskRCNN, mask_norm=True, **V2_KWARGS,
    reference="torchvision:maskrcnn_resnet50_fpn_v2", **_SEGMENT,
)
