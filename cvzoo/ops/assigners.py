"""Task-aligned assignment (Feng et al. 2021, "TOOD: Task-aligned One-stage Object Detection"), as YOLOv8 uses it."""

from __future__ import annotations

from typing import NamedTuple

import torch

from cvzoo.ops._checks import ShapeError, check_choice, check_last_dim, check_ndim
from cvzoo.ops.boxes import box_iou_elementwise, complete_box_iou_elementwise


class TaskAlignedTargets(NamedTuple):
    """Result of :class:`TaskAlignedAssigner` (unpacks as a 5-tuple).

    Attributes:
        labels: ``[B, A]`` int64 class of each anchor; ``num_classes`` for background.
        bboxes: ``[B, A, 4]`` xyxy box of the assigned GT; zeros for background.
        scores: ``[B, A, C]`` soft classification targets (normalised alignment at the GT's class).
        fg_mask: ``[B, A]`` bool, anchors assigned to a GT.
        gt_idx: ``[B, A]`` int64 index of the assigned GT in the padded ``M`` axis (0 for background).
    """

    labels: torch.Tensor
    bboxes: torch.Tensor
    scores: torch.Tensor
    fg_mask: torch.Tensor
    gt_idx: torch.Tensor


class TaskAlignedAssigner:
    """Assign anchors to GTs by the task-alignment metric ``t = s^alpha * u^beta`` (TOOD, sec. 3.2).

    ``s`` is the predicted score of the GT's class and ``u`` the IoU of the predicted box with the GT
    (CIoU clamped at 0 by default, as YOLOv8). Per GT, the ``topk`` anchors of largest ``t`` among those
    whose point lies inside the GT box become positive; an anchor claimed by several GTs keeps the one
    its predicted box overlaps most. The classification target of a positive is
    ``t / max_t(GT) * max_u(GT)`` at its GT's class, so the best-aligned anchor of each GT is asked to
    predict that GT's best IoU and the others proportionally less.

    Everything is batched over images, GTs and anchors (``[B, M, A]`` masks), with no Python loop.

    Args:
        num_classes: ``C``.
        topk: candidates per GT.
        alpha, beta: exponents of score and IoU in the metric (YOLOv8: 0.5 and 6.0; TOOD: 1 and 6).
        eps: margin of the "point inside box" test and of the normalisation.
        iou_type: ``"ciou"`` (YOLOv8) or ``"iou"`` (TOOD).
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 1.0,
        beta: float = 6.0,
        eps: float = 1e-9,
        iou_type: str = "ciou",
    ) -> None:
        if num_classes < 1 or topk < 1:
            raise ValueError(
                f"TaskAlignedAssigner: num_classes and topk must be >= 1, got {num_classes}, {topk}"
            )
        check_choice(iou_type, ("ciou", "iou"), "iou_type", "TaskAlignedAssigner")
        self.num_classes, self.topk, self.alpha, self.beta, self.eps = num_classes, topk, alpha, beta, eps
        self.iou_type = iou_type

    def _check(
        self,
        pred_scores: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        where = "TaskAlignedAssigner"
        check_ndim(pred_scores, 3, "pred_scores", where, "[B, A, C]")
        batch, num_anchors, num_classes = pred_scores.shape
        if num_classes != self.num_classes:
            raise ShapeError(f"{where}: pred_scores has {num_classes} classes, expected {self.num_classes}")
        if pred_bboxes.shape != (batch, num_anchors, 4):
            raise ShapeError(
                f"{where}: pred_bboxes must be [{batch}, {num_anchors}, 4], got {list(pred_bboxes.shape)}"
            )
        if anchor_points.shape != (num_anchors, 2):
            raise ShapeError(
                f"{where}: anchor_points must be [{num_anchors}, 2], got {list(anchor_points.shape)}"
            )
        check_ndim(gt_bboxes, 3, "gt_bboxes", where, "[B, M, 4]")
        check_last_dim(gt_bboxes, 4, "gt_bboxes", where)
        num_gt = gt_bboxes.shape[1]
        if gt_bboxes.shape[0] != batch:
            raise ShapeError(f"{where}: gt_bboxes has batch {gt_bboxes.shape[0]}, pred_scores has {batch}")
        for name, tensor in (("gt_labels", gt_labels), ("mask_gt", mask_gt)):
            if tuple(tensor.shape) not in ((batch, num_gt), (batch, num_gt, 1)):
                raise ShapeError(f"{where}: {name} must be [{batch}, {num_gt}, 1], got {list(tensor.shape)}")
        labels = gt_labels.reshape(batch, num_gt).long()
        mask = mask_gt.reshape(batch, num_gt).bool()
        valid_labels = labels[mask]
        if valid_labels.numel() and (
            int(valid_labels.min()) < 0 or int(valid_labels.max()) >= self.num_classes
        ):
            raise ValueError(f"{where}: gt_labels must lie in [0, {self.num_classes}) where mask_gt is set")
        return labels, mask

    @torch.no_grad()
    def __call__(
        self,
        pred_scores: torch.Tensor,
        pred_bboxes: torch.Tensor,
        anchor_points: torch.Tensor,
        gt_labels: torch.Tensor,
        gt_bboxes: torch.Tensor,
        mask_gt: torch.Tensor,
    ) -> TaskAlignedTargets:
        """Assign.

        Args:
            pred_scores: ``[B, A, C]`` class probabilities (after sigmoid).
            pred_bboxes: ``[B, A, 4]`` predicted xyxy boxes, same unit as the GTs.
            anchor_points: ``[A, 2]`` ``(x, y)`` anchor points, same unit.
            gt_labels: ``[B, M, 1]`` (or ``[B, M]``) class indices, padded.
            gt_bboxes: ``[B, M, 4]`` xyxy GT boxes, padded.
            mask_gt: ``[B, M, 1]`` (or ``[B, M]``) 1 for real GTs, 0 for padding.

        Returns:
            :class:`TaskAlignedTargets`.
        """
        labels, mask = self._check(pred_scores, pred_bboxes, anchor_points, gt_labels, gt_bboxes, mask_gt)
        batch, num_anchors, num_classes = pred_scores.shape
        num_gt = gt_bboxes.shape[1]
        device = pred_scores.device
        if num_gt == 0:
            return TaskAlignedTargets(
                torch.full((batch, num_anchors), num_classes, dtype=torch.int64, device=device),
                pred_bboxes.new_zeros((batch, num_anchors, 4)),
                pred_scores.new_zeros((batch, num_anchors, num_classes)),
                torch.zeros((batch, num_anchors), dtype=torch.bool, device=device),
                torch.zeros((batch, num_anchors), dtype=torch.int64, device=device),
            )
        gt_bboxes = gt_bboxes.to(pred_bboxes.dtype)
        dtype = pred_scores.dtype

        # Candidates: real GTs whose box strictly contains the anchor point. [B, M, A]; the only dense
        # [B, M, A] work besides the top-k below, everything after runs on the selected entries.
        px, py = anchor_points.to(gt_bboxes).unbind(-1)
        x1, y1, x2, y2 = (c[..., None] for c in gt_bboxes.unbind(-1))
        inside_x = torch.minimum(px - x1, x2 - px)
        inside_y = torch.minimum(py - y1, y2 - py)
        candidate = (torch.minimum(inside_x, inside_y) > self.eps) & mask[..., None]

        # Alignment metric at the candidates; non-candidates rank at -1, below every candidate.
        b, m, a = torch.where(candidate)
        iou = self._iou(gt_bboxes[b, m], pred_bboxes[b, a])
        metric = pred_scores[b, a, labels[b, m]].pow(self.alpha) * iou.pow(self.beta).to(dtype)
        ranked = pred_scores.new_full((batch, num_gt, num_anchors), -1.0)
        ranked[b, m, a] = metric
        top_metric, top_anchor = ranked.topk(min(self.topk, num_anchors), dim=-1)

        # Positives: the top-k entries that are candidates, as flat (image, GT, anchor) lists.
        b, m, k = torch.where(top_metric >= 0)
        a = top_anchor[b, m, k]
        metric = top_metric[b, m, k]
        iou = self._iou(gt_bboxes[b, m], pred_bboxes[b, a])

        # An anchor claimed by several GTs keeps the claimant its prediction overlaps most (lowest GT
        # index on a tie).
        anchor_key = b * num_anchors + a
        flat = batch * num_anchors
        best_iou = iou.new_full((flat,), -1.0).scatter_reduce(0, anchor_key, iou, "amax")
        tied_gt = torch.where(iou == best_iou[anchor_key], m, torch.full_like(m, num_gt))
        first_gt = m.new_full((flat,), num_gt).scatter_reduce(0, anchor_key, tied_gt, "amin")
        keep = m == first_gt[anchor_key]
        b, m, a, metric, iou, anchor_key = (t[keep] for t in (b, m, a, metric, iou, anchor_key))

        fg_mask = torch.zeros(flat, dtype=torch.bool, device=device)
        fg_mask[anchor_key] = True
        gt_idx = torch.zeros(flat, dtype=torch.int64, device=device)
        gt_idx[anchor_key] = m
        target_labels = torch.full((flat,), num_classes, dtype=torch.int64, device=device)
        target_labels[anchor_key] = labels[b, m]
        target_bboxes = pred_bboxes.new_zeros((flat, 4))
        target_bboxes[anchor_key] = gt_bboxes[b, m]

        # Normalise: per GT, metric / max metric * max IoU over its positives.
        gt_key = b * num_gt + m
        max_metric = metric.new_zeros(batch * num_gt).scatter_reduce(0, gt_key, metric, "amax")
        max_iou = iou.new_zeros(batch * num_gt).scatter_reduce(0, gt_key, iou, "amax")
        target_scores = pred_scores.new_zeros((batch, num_anchors, num_classes))
        norm = metric.float() * max_iou[gt_key] / (max_metric[gt_key].float() + self.eps)
        target_scores[b, a, labels[b, m]] = norm.to(dtype)
        shape = (batch, num_anchors)
        return TaskAlignedTargets(
            target_labels.view(shape),
            target_bboxes.view(batch, num_anchors, 4),
            target_scores,
            fg_mask.view(shape),
            gt_idx.view(shape),
        )

    def _iou(self, gt_boxes: torch.Tensor, pred_boxes: torch.Tensor) -> torch.Tensor:
        """``[K]`` IoU (CIoU or plain, clamped at 0) of matched GT and predicted xyxy boxes."""
        iou_fn = complete_box_iou_elementwise if self.iou_type == "ciou" else box_iou_elementwise
        return iou_fn(gt_boxes, pred_boxes).clamp(min=0)

    def __repr__(self) -> str:
        return (
            f"TaskAlignedAssigner(num_classes={self.num_classes}, topk={self.topk}, alpha={self.alpha}, "
            f"beta={self.beta}, iou_type={self.iou_type!r})"
        )
