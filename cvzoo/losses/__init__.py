"""Losses: focal family (sigmoid and softmax focal, varifocal, quality focal, distribution focal), box
regression (smooth L1, IoU/GIoU/DIoU/CIoU), classification (label smoothing, soft targets), Dice, the
segmentation criterion, and metric learning (contrastive, triplet, supervised contrastive)."""

from cvzoo.losses.box_losses import iou_loss, smooth_l1_loss
from cvzoo.losses.classification import (
    SoftTargetCrossEntropy,
    label_smoothing_cross_entropy,
    soft_target_cross_entropy,
)
from cvzoo.losses.dice import dice_loss
from cvzoo.losses.focal import (
    distribution_focal_loss,
    gaussian_focal_loss,
    quality_focal_loss,
    sigmoid_focal_loss,
    softmax_focal_loss,
    varifocal_loss,
)
from cvzoo.losses.metric_learning import (
    batch_hard_triplet_loss,
    contrastive_loss,
    supervised_contrastive_loss,
    triplet_loss,
)
from cvzoo.losses.segmentation import SEGMENTATION_LOSSES, SegmentationLoss

__all__ = [
    "SEGMENTATION_LOSSES",
    "SegmentationLoss",
    "SoftTargetCrossEntropy",
    "batch_hard_triplet_loss",
    "contrastive_loss",
    "dice_loss",
    "distribution_focal_loss",
    "gaussian_focal_loss",
    "iou_loss",
    "label_smoothing_cross_entropy",
    "quality_focal_loss",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "softmax_focal_loss",
    "soft_target_cross_entropy",
    "supervised_contrastive_loss",
    "triplet_loss",
    "varifocal_loss",
]
