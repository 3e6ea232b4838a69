"""The R-CNN family (Faster R-CNN, Mask R-CNN with FPN), one small module per part:

- ``transform``: normalise, resize, batch; boxes back to the image's pixels;
- ``backbone``: a registered classifier + FPN, stage freezing, frozen batch norm;
- ``rpn`` (+ ``sampler``): anchors -> proposals, the RPN losses;
- ``poolers``: multi-scale RoIAlign with the FPN level mapping;
- ``roi_heads``: box head, predictor, Fast R-CNN loss and inference;
- ``mask_head``: Mask R-CNN's mask head, targets, loss and mask pasting;
- ``faster_rcnn`` / ``mask_rcnn``: the detectors and their registered variants;
- ``remap``: torchvision checkpoints -> cvzoo keys.
"""

from cvzoo.models.detection.rcnn import remap  # noqa: F401
from cvzoo.models.detection.rcnn.faster_rcnn import FasterRCNN
from cvzoo.models.detection.rcnn.mask_rcnn import MaskRCNN

__all__ = ["FasterRCNN", "MaskRCNN"]
