"""Box regression losses: smooth L1 (Fast R-CNN) and the IoU family (UnitBox, GIoU, DIoU, CIoU)."""

from __future__ import annotations

import torch

from cvzoo.losses._reduce import check_reduction, check_same_shape, reduce_loss
from cvzoo.ops import ShapeError
from cvzoo.ops.boxes import (
    box_iou_elementwise,
    complete_box_iou_elementwise,
    distance_box_iou_elementwise,
    generalized_box_iou_elementwise,
)

_IOU_FUNCTIONS = {
    "iou": box_iou_elementwise,
    "giou": generalized_box_iou_elementwise,
    "diou": distance_box_iou_elementwise,
    "ciou": complete_box_iou_elementwise,
}


def smooth_l1_loss(
    inputs: torch.Tensor, targets: torch.Tensor, beta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    """Smooth L1 (Girshick 2015, "Fast R-CNN", eq. 3): ``0.5 x^2 / beta`` if ``|x| < beta``, else ``|x| - 0.5 beta``.

    Quadratic near zero (smooth gradients for small errors), linear beyond ``beta`` (robust to outliers);
    ``beta = 0`` gives L1. Same values as ``torch.nn.functional.smooth_l1_loss``.

    Args:
        inputs, targets: ``[...]`` tensors of the same shape (e.g. encoded box deltas ``[N, 4]``).
        beta: width of the quadratic zone (>= 0; torchvision's Faster R-CNN uses 1/9).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
    """
    check_same_shape(inputs, targets, ("inputs", "targets"), "smooth_l1_loss")
    check_reduction(reduction, "smooth_l1_loss")
    if beta < 0:
        raise ValueError(f"smooth_l1_loss: beta must be >= 0, got {beta}")
    diff = (inputs - targets).abs()
    if beta == 0:
        loss = diff
    else:
        loss = torch.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)
    return reduce_loss(loss, reduction)


def iou_loss(
    pred_boxes: torch.Tensor,
    target_boxes: torch.Tensor,
    kind: str = "giou",
    reduction: str = "none",
    eps: float = 1e-7,
) -> torch.Tensor:
    """``1 - IoU`` for matched xyxy boxes, with IoU one of IoU / GIoU / DIoU / CIoU.

    ``"iou"``: Yu et al. 2016 (UnitBox) in its linear form; ``"giou"``: Rezatofighi et al. 2019, non-zero
    gradient for disjoint boxes; ``"diou"`` / ``"ciou"``: Zheng et al. 2020, which add the normalised
    centre distance (and the aspect-ratio term). Equal to torchvision's ``generalized_box_iou_loss``,
    ``distance_box_iou_loss`` and ``complete_box_iou_loss``.

    Args:
        pred_boxes: ``[..., 4]`` xyxy predictions.
        target_boxes: ``[..., 4]`` xyxy targets, same shape.
        kind: ``"iou"`` | ``"giou"`` | ``"diou"`` | ``"ciou"``.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        eps: added to the denominators.

    Returns:
        ``[...]`` (``"none"``) or a scalar.
    """
    if kind not in _IOU_FUNCTIONS:
        raise ValueError(f"iou_loss: kind must be one of {list(_IOU_FUNCTIONS)}, got {kind!r}")
    check_same_shape(pred_boxes, target_boxes, ("pred_boxes", "target_boxes"), "iou_loss")
    check_reduction(reduction, "iou_loss")
    if pred_boxes.shape[-1:] != (4,):
        raise ShapeError(f"iou_loss: boxes must be [..., 4], got {list(pred_boxes.shape)}")
    loss = 1 - _IOU_FUNCTIONS[kind](pred_boxes, target_boxes, eps=eps)
    return reduce_loss(loss, reduction)
