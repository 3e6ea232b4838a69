"""YOLO training losses: anchor-based (YOLOv3 assignment or YOLOv5 targets) and anchor-free (YOLOv8).

Conventions shared by both, following the reference recipes (YOLOv5 ``ComputeLoss``, YOLOv8
``v8DetectionLoss``): every part is a normalised mean (per positive, per cell or per unit of target
score) multiplied by its gain; the returned ``"loss"`` is the sum of the parts times the batch size
(the recipes then pick the learning rate and weight decay for that scale); the named parts are reported
detached and without the batch-size factor.

Targets are the canonical per-image dicts ``{"boxes": [N, 4] xyxy input pixels, "labels": [N]}``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cvzoo.losses import distribution_focal_loss
from cvzoo.models.detection.base import pad_targets
from cvzoo.ops import (
    TaskAlignedAssigner,
    bbox2dist,
    box_convert,
    complete_box_iou_elementwise,
    dist2bbox,
    generalized_box_iou_elementwise,
    make_grid_points,
    yolo_decode_v3,
    yolo_decode_v5,
    yolo_v3_assign,
    yolo_v5_build_targets,
)

# Objectness balance per level, finest first (YOLOv5: the many cells of P3 get more weight).
OBJECTNESS_BALANCE = {3: (4.0, 1.0, 0.4)}
OBJECTNESS_BALANCE_OTHER = (4.0, 1.0, 0.25, 0.06, 0.02)
# exp() of a raw YOLOv3 size above this would overflow to inf: clamp inside the loss only.
_MAX_LOG_SCALE = 10.0


def flatten_targets(
    targets: Sequence[dict[str, torch.Tensor]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image targets -> ``gt_boxes [T, 4]`` cxcywh pixels, ``gt_batch [T]`` and ``gt_labels [T]`` int64."""
    boxes = [t["boxes"].to(device).float().reshape(-1, 4) for t in targets]
    labels = [t["labels"].to(device).long().reshape(-1) for t in targets]
    batch = [torch.full((len(b),), i, dtype=torch.int64, device=device) for i, b in enumerate(boxes)]
    if not boxes:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return torch.zeros(0, 4, device=device), empty, empty
    return box_convert(torch.cat(boxes), "xyxy", "cxcywh"), torch.cat(batch), torch.cat(labels)


def _check_batch(batch: int, targets: Sequence[dict[str, torch.Tensor]]) -> int:
    if len(targets) != batch:
        raise ValueError(f"{len(targets)} targets for a batch of {batch} images (one dict per image)")
    return batch


def _zero_like_graph(*tensors: torch.Tensor) -> torch.Tensor:
    # A zero that still depends on every prediction: parameters that get no real gradient this step
    # (e.g. the box outputs of a batch without objects) get a zero one, as DistributedDataParallel expects.
    return sum(t.sum() for t in tensors) * 0.0


class YoloAnchorLoss:
    """The anchor-based YOLO loss: objectness BCE, class BCE (positives only), box loss (positives only).

    ``assigner="v3"`` (Redmon & Farhadi 2018): each GT is positive at the single best-shaped anchor (over
    all levels) in the cell of its centre; other anchors whose shape IoU exceeds ``ignore_thresh`` there
    are ignored; every other cell/anchor is a negative. The objectness target is 1 for positives. The box
    loss is ``box_loss="giou"`` (1 - GIoU of the decoded box, as later YOLOv3 implementations) or
    ``"mse"`` (the paper's squared error on ``sigmoid(t_xy)`` vs. the centre's offset in the cell and on
    ``t_wh`` vs. ``log(w / p_w)``, weighted by ``2 - w h / (W H)`` so small boxes count more).

    ``assigner="v5"`` (YOLOv5): every anchor of every level whose width and height ratios to the GT are
    within ``anchor_t`` is positive, at the centre's cell and its two nearest neighbour cells; boxes are
    decoded with the grid-sensitive ``2 sigmoid - 0.5`` / ``(2 sigmoid)^2`` rule; the box loss is
    ``1 - CIoU`` and the objectness target of a positive is its (detached, clamped) CIoU.

    Per level: box and class losses are means over the positives, the objectness BCE a mean over all
    (non-ignored) cells weighted by ``balance``. Gains follow YOLOv5's hyp.scratch (box 0.05, obj 1.0,
    cls 0.5), scaled by ``3 / num_levels`` and the class gain also by ``num_classes / 80``, as its train.py
    does (its further ``(img_size / 640)^2`` factor on the objectness gain is left to ``obj_gain``). With a
    single class no class loss is computed (objectness carries the score).

    Args:
        num_classes: ``K``.
        strides: stride of each level, finest first.
        assigner: ``"v3"`` or ``"v5"``.
        box_loss: ``"giou"``, ``"mse"`` (v3 only) or ``"ciou"`` (v5).
        box_gain, obj_gain, cls_gain: loss weights before the level/class scaling.
        balance: objectness weight per level (default: (4.0, 1.0, 0.4) for three levels).
        anchor_t: v5 size-ratio threshold.
        ignore_thresh: v3 ignore threshold on the shape IoU.
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        assigner: str = "v5",
        box_loss: str | None = None,
        box_gain: float = 0.05,
        obj_gain: float = 1.0,
        cls_gain: float = 0.5,
        balance: Sequence[float] | None = None,
        anchor_t: float = 4.0,
        ignore_thresh: float = 0.5,
    ) -> None:
        if assigner not in ("v3", "v5"):
            raise ValueError(f"YoloAnchorLoss: assigner must be 'v3' or 'v5', got {assigner!r}")
        box_loss = box_loss or ("giou" if assigner == "v3" else "ciou")
        allowed = ("giou", "mse") if assigner == "v3" else ("ciou", "giou")
        if box_loss not in allowed:
            raise ValueError(f"YoloAnchorLoss: box_loss for assigner {assigner!r} must be one of {allowed}")
        levels = len(strides)
        self.num_classes, self.strides, self.assigner, self.box_loss = num_classes, tuple(strides), assigner, box_loss
        self.box_gain = box_gain * 3 / levels
        self.obj_gain = obj_gain * 3 / levels
        self.cls_gain = cls_gain * num_classes / 80 * 3 / levels
        self.balance = tuple(balance or OBJECTNESS_BALANCE.get(levels, OBJECTNESS_BALANCE_OTHER[:levels]))
        if len(self.balance) != levels:
            raise ValueError(f"YoloAnchorLoss: balance needs {levels} values, got {self.balance}")
        self.anchor_t, self.ignore_thresh = anchor_t, ignore_thresh

    def __call__(
        self,
        predictions: Sequence[torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]],
        anchors: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Loss of raw predictions ``[B, A, H, W, 5 + K]`` per level for anchors ``[L, A, 2]`` (pixels)."""
        predictions = [p.float() for p in predictions]
        device = predictions[0].device
        batch = _check_batch(predictions[0].shape[0], targets)
        gt_boxes, gt_batch, gt_labels = flatten_targets(targets, device)
        sizes = [tuple(p.shape[2:4]) for p in predictions]
        anchors = anchors.to(device).float()
        if self.assigner == "v3":
            image_area = float(sizes[0][0] * sizes[0][1] * self.strides[0] ** 2)
            box, obj, cls = self._v3(predictions, gt_boxes, gt_batch, gt_labels, anchors, sizes, batch, image_area)
        else:
            box, obj, cls = self._v5(predictions, gt_boxes, gt_batch, gt_labels, anchors, sizes, batch)
        box, obj, cls = box * self.box_gain, obj * self.obj_gain, cls * self.cls_gain
        total = (box + obj + cls + _zero_like_graph(*predictions)) * batch
        return {"loss": total, "box": box.detach(), "obj": obj.detach(), "cls": cls.detach()}

    def _class_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.num_classes == 1:
            return logits.new_zeros(())
        return F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, self.num_classes).to(logits))

    def _v3(
        self,
        predictions: Sequence[torch.Tensor],
        gt_boxes: torch.Tensor,
        gt_batch: torch.Tensor,
        gt_labels: torch.Tensor,
        anchors: torch.Tensor,
        sizes: Sequence[tuple[int, int]],
        batch: int,
        image_area: float,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted (box, objectness, class) sums over the levels with YOLOv3's assignment."""
        assigned = yolo_v3_assign(gt_boxes, gt_batch, anchors, self.strides, sizes, batch, self.ignore_thresh)
        zero = predictions[0].new_zeros(())
        box, obj, cls = zero, zero, zero
        for level, (pred, target) in enumerate(zip(predictions, assigned)):
            stride = self.strides[level]
            keep = (~target.ignore).to(pred)
            bce = F.binary_cross_entropy_with_logits(pred[..., 4], target.positive.to(pred), reduction="none")
            obj = obj + self.balance[level] * (bce * keep).sum() / keep.sum().clamp(min=1)
            b, a, gy, gx = torch.where(target.positive)
            if len(b) == 0:
                continue
            p = pred[b, a, gy, gx]  # [P, 5 + K]
            gt = target.gt_index[b, a, gy, gx]
            cell = torch.stack((gx, gy), dim=-1).to(p)
            anchor_wh = anchors[level, a] / stride
            gt_grid = gt_boxes[gt] / stride  # cxcywh in grid units
            if self.box_loss == "giou":
                raw = torch.cat((p[:, :2], p[:, 2:4].clamp(max=_MAX_LOG_SCALE)), dim=-1)
                pred_box = box_convert(yolo_decode_v3(raw, cell, anchor_wh, 1.0), "cxcywh", "xyxy")
                giou = generalized_box_iou_elementwise(pred_box, box_convert(gt_grid, "cxcywh", "xyxy"))
                box = box + (1.0 - giou).mean()
            else:
                target_xy = gt_grid[:, :2] - cell
                target_wh = torch.log(gt_grid[:, 2:] / anchor_wh)
                weight = 2.0 - gt_boxes[gt, 2] * gt_boxes[gt, 3] / image_area
                error = (torch.sigmoid(p[:, :2]) - target_xy).pow(2).sum(-1) + (p[:, 2:4] - target_wh).pow(2).sum(-1)
                box = box + (weight * error).mean()
            cls = cls + self._class_loss(p[:, 5:], gt_labels[gt])
        return box, obj, cls

    def _v5(
        self,
        predictions: Sequence[torch.Tensor],
        gt_boxes: torch.Tensor,
        gt_batch: torch.Tensor,
        gt_labels: torch.Tensor,
        anchors: torch.Tensor,
        sizes: Sequence[tuple[int, int]],
        batch: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unweighted (box, objectness, class) sums over the levels with YOLOv5's targets."""
        built = yolo_v5_build_targets(gt_boxes, gt_batch, anchors, self.strides, sizes, batch, self.anchor_t)
        zero = predictions[0].new_zeros(())
        box, obj, cls = zero, zero, zero
        for level, (pred, target) in enumerate(zip(predictions, built)):
            obj_target = torch.zeros_like(pred[..., 4])
            if len(target.batch_idx):
                p = pred[target.batch_idx, target.anchor_idx, target.grid_y, target.grid_x]
                # Decode relative to the cell's corner (grid 0), the frame of target.box.
                pred_box = yolo_decode_v5(p[:, :4], torch.zeros_like(p[:, :2]), target.anchor_wh, 1.0)
                iou_fn = complete_box_iou_elementwise if self.box_loss == "ciou" else generalized_box_iou_elementwise
                iou = iou_fn(box_convert(pred_box, "cxcywh", "xyxy"), box_convert(target.box, "cxcywh", "xyxy"))
                box = box + (1.0 - iou).mean()
                # Objectness target = IoU of the prediction (YOLOv5's gr = 1); a cell/anchor claimed
                # several times keeps its best IoU.
                flat = ((target.batch_idx * pred.shape[1] + target.anchor_idx) * pred.shape[2]
                        + target.grid_y) * pred.shape[3] + target.grid_x
                obj_target.view(-1).scatter_reduce_(0, flat, iou.detach().clamp(min=0), reduce="amax")
                cls = cls + self._class_loss(p[:, 5:], gt_labels[target.gt_index])
            obj = obj + self.balance[level] * F.binary_cross_entropy_with_logits(pred[..., 4], obj_target)
        return box, obj, cls


def expected_distances(box_logits: torch.Tensor, reg_max: int) -> torch.Tensor:
    """``[..., 4 * R]`` per-side bin logits -> ``[..., 4]`` expected distances ``sum_i i softmax_i`` (GFL)."""
    probs = box_logits.unflatten(-1, (4, reg_max)).softmax(dim=-1)
    bins = torch.arange(reg_max, device=box_logits.device, dtype=probs.dtype)
    return (probs * bins).sum(dim=-1)


class YoloV8Loss:
    """YOLOv8's anchor-free loss with task-aligned assignment (Feng et al. 2021, TOOD).

    Each grid point predicts the distances to the four box sides as distributions over ``reg_max`` bins
    (in stride units) and per-class logits. The assigner (top-k 10, alpha 0.5, beta 6.0) picks positives
    by ``score^alpha * CIoU^beta`` among the points inside a GT and gives each positive a soft class
    target. Parts, each normalised by the sum of the target scores ``S``:

    - class: BCE of all logits against the soft targets, summed, over ``S``;
    - box: ``1 - CIoU`` of each positive, weighted by its target score, over ``S``;
    - DFL: distribution focal loss of the four sides, weighted the same way, over ``S``.

    Gains box 7.5, class 0.5, DFL 1.5 (the YOLOv8 defaults); ``"loss"`` is their sum times the batch size.

    Args:
        num_classes: ``K``.
        strides: stride of each level, finest first.
        reg_max: bins per side ``R``.
        box_gain, cls_gain, dfl_gain: weights of the parts.
        topk, alpha, beta: assigner settings.
    """

    def __init__(
        self,
        num_classes: int,
        strides: Sequence[int],
        reg_max: int = 16,
        box_gain: float = 7.5,
        cls_gain: float = 0.5,
        dfl_gain: float = 1.5,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
    ) -> None:
        self.num_classes, self.strides, self.reg_max = num_classes, tuple(strides), reg_max
        self.box_gain, self.cls_gain, self.dfl_gain = box_gain, cls_gain, dfl_gain
        self.assigner = TaskAlignedAssigner(num_classes, topk=topk, alpha=alpha, beta=beta)

    def __call__(
        self, predictions: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """Loss of raw level maps ``[B, 4 * R + K, H, W]``, finest first."""
        batch = _check_batch(predictions[0].shape[0], targets)
        device = predictions[0].device
        flat = torch.cat([p.float().flatten(2) for p in predictions], dim=2).transpose(1, 2)  # [B, A, 4R + K]
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.num_classes), dim=-1)
        sizes = [tuple(p.shape[2:]) for p in predictions]
        points, point_strides = make_grid_points(sizes, self.strides, 0.5, device=device)
        grid_points = points / point_strides[:, None]  # grid units: the frame the distances live in
        pred_boxes = dist2bbox(expected_distances(box_logits, self.reg_max), grid_points)  # [B, A, 4] xyxy

        labels, gt_boxes, mask = pad_targets(targets, device)
        assigned = self.assigner(
            cls_logits.detach().sigmoid(), pred_boxes.detach() * point_strides[:, None], points,
            labels, gt_boxes, mask,
        )
        score_sum = assigned.scores.sum().clamp(min=1.0)
        cls = F.binary_cross_entropy_with_logits(cls_logits, assigned.scores, reduction="sum") / score_sum

        box = dfl = _zero_like_graph(box_logits)
        fg = assigned.fg_mask
        if fg.any():
            weight = assigned.scores.sum(-1)[fg]
            target_boxes = assigned.bboxes / point_strides[:, None]
            iou = complete_box_iou_elementwise(pred_boxes[fg], target_boxes[fg])
            box = ((1.0 - iou) * weight).sum() / score_sum
            target_dist = bbox2dist(grid_points, target_boxes, self.reg_max - 1)[fg]  # [P, 4]
            side_losses = distribution_focal_loss(box_logits[fg].reshape(-1, self.reg_max), target_dist.reshape(-1))
            dfl = (side_losses.view(-1, 4).mean(-1) * weight).sum() / score_sum
        box, cls, dfl = box * self.box_gain, cls * self.cls_gain, dfl * self.dfl_gain
        total = (box + cls + dfl) * batch
        return {"loss": total, "box": box.detach(), "cls": cls.detach(), "dfl": dfl.detach()}
