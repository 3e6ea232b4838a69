"""The R-CNN family (Faster R-CNN, Mask R-CNN with FPN), one small module per part:

- ``rpn`` (+ ``sampler``): anchors -> proposals, the RPN losses;
- ``poolers``: multi-scale RoIAlign with the FPN level mapping;
- ``roi_heads``: box head, predictor, Fast R-CNN loss and inference;
- ``mask_head``: Mask R-CNN's mask head, targets, loss and mask pasting;
- ``faster_rcnn`` / ``mask_rcnn``: the detectors and their registered variants;
- ``remap``: torchvision checkpoints -> cvzoo keys.

The image transform and the FPN backbone are shared with other detectors: ``detection.transform``,
``detection.fpn_backbone``.
"""

from cvzoo.models.detection.rcnn import remap  # noqa: F401
from cvzoo.models.detection.rcnn.faster_rcnn import FasterRCNN
from cvzoo.models.detection.rcnn.mask_rcnn import MaskRCNN

__all__ = ["FasterRCNN", "MaskRCNN"]
