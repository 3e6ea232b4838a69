"""Matching ground truth to anchors, points and queries: IoU thresholds (Faster R-CNN, RetinaNet),
Hungarian matching (DETR) and FCOS centre sampling with scale ranges.

The YOLO target builders live in :mod:`cvzoo.ops.yolo_targets` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from cvzoo.ops._checks import ShapeError, check_choice, check_last_dim, check_ndim
from cvzoo.ops.boxes import box_area, box_convert, generalized_box_iou
from cvzoo.ops.yolo_targets import YoloV3Targets, YoloV5Targets, yolo_v3_assign, yolo_v5_build_targets

__all__ = [
    "FCOS_SIZE_BOUNDS",
    "HungarianMatcher",
    "IoUMatcher",
    "YoloV3Targets",
    "YoloV5Targets",
    "fcos_assign",
    "fcos_center_sampling",
    "fcos_centerness",
    "fcos_size_ranges",
    "yolo_v3_assign",
    "yolo_v5_build_targets",
]


class IoUMatcher:
    """Assign each anchor the ground truth it overlaps most, split by two IoU thresholds.

    ``IoU >= high`` -> that GT's index; ``low <= IoU < high`` -> ``IGNORE`` (-2, not trained);
    ``IoU < low`` -> ``NEGATIVE`` (-1, background). With ``allow_low_quality_matches`` every GT also keeps
    the anchors that overlap it most (ties included) even below ``high`` (Ren et al. 2015, sec. 3.1.2), so
    no GT is left without a positive. Same semantics as torchvision's ``_utils.Matcher``.

    Args:
        high_threshold: foreground IoU (0.7 RPN, 0.5 RetinaNet / Fast R-CNN head).
        low_threshold: background IoU (0.3 RPN, 0.4 RetinaNet); equal to ``high`` for no ignore band.
        allow_low_quality_matches: see above.
    """

    NEGATIVE = -1
    IGNORE = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        if low_threshold > high_threshold:
            raise ValueError(f"IoUMatcher: low_threshold {low_threshold} > high_threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: torch.Tensor) -> torch.Tensor:
        """Match from a ``[M, N]`` quality matrix (IoU of M GTs with N anchors) -> ``[N]`` int64.

        With no GT (``M == 0``) every anchor is a negative.
        """
        check_ndim(match_quality_matrix, 2, "match_quality_matrix", "IoUMatcher", "[M, N]")
        num_gt, num_anchors = match_quality_matrix.shape
        if num_gt == 0:
            return torch.full(
                (num_anchors,), self.NEGATIVE, dtype=torch.int64, device=match_quality_matrix.device
            )
        if num_anchors == 0:
            return torch.zeros((0,), dtype=torch.int64, device=match_quality_matrix.device)
        best_iou, best_gt = match_quality_matrix.max(dim=0)
        matches = best_gt.clone()
        matches[best_iou < self.low_threshold] = self.NEGATIVE
        matches[(best_iou >= self.low_threshold) & (best_iou < self.high_threshold)] = self.IGNORE
        if self.allow_low_quality_matches:
            # The anchor keeps its own best GT (not necessarily the GT for which it is the best anchor).
            best_per_gt = match_quality_matrix.max(dim=1, keepdim=True).values
            anchors = torch.where(match_quality_matrix == best_per_gt)[1]
            matches[anchors] = best_gt[anchors]
        return matches

    def __repr__(self) -> str:
        return (
            f"IoUMatcher(high_threshold={self.high_threshold}, low_threshold={self.low_threshold}, "
            f"allow_low_quality_matches={self.allow_low_quality_matches})"
        )


class HungarianMatcher:
    """One-to-one matching of queries to targets for set prediction (Carion et al. 2020, DETR, sec. 3.1).

    Cost of pairing query i with target j:
    ``cost_class * (-p_i(c_j)) + cost_bbox * ||b_i - b_j||_1 + cost_giou * (-GIoU(b_i, b_j))``, where
    ``p_i`` is the softmax over classes; the assignment of minimum total cost comes from
    ``scipy.optimize.linear_sum_assignment`` per image.

    Detectors with sigmoid class scores (Deformable DETR, RT-DETR) use the focal form of the class cost
    instead (``class_cost="focal"``): the focal loss of calling the class present minus that of calling it
    absent, ``alpha (1 - p)^gamma (-log p) - (1 - alpha) p^gamma (-log(1 - p))`` with ``p`` the sigmoid.

    Args:
        cost_class, cost_bbox, cost_giou: the weights (DETR: 1, 5, 2; RT-DETR: 2, 5, 2).
        box_format: format of predicted and target boxes (DETR: normalised ``"cxcywh"``).
        class_cost: ``"softmax"`` (DETR) or ``"focal"`` (sigmoid scores).
        focal_alpha, focal_gamma: of the focal class cost (0.25, 2).
    """

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_bbox: float = 5.0,
        cost_giou: float = 2.0,
        box_format: str = "cxcywh",
        class_cost: str = "softmax",
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
    ) -> None:
        if cost_class == 0 and cost_bbox == 0 and cost_giou == 0:
            raise ValueError("HungarianMatcher: all costs are 0")
        check_choice(box_format, ("xyxy", "xywh", "cxcywh"), "box_format", "HungarianMatcher")
        check_choice(class_cost, ("softmax", "focal"), "class_cost", "HungarianMatcher")
        self.class_cost, self.focal_alpha, self.focal_gamma = class_cost, focal_alpha, focal_gamma
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.box_format = box_format

    @torch.no_grad()
    def cost_matrix(
        self,
        logits: torch.Tensor,
        boxes: torch.Tensor,
        target_labels: torch.Tensor,
        target_boxes: torch.Tensor,
    ) -> torch.Tensor:
        """``[Q, T]`` cost of Q queries (``logits [Q, C]``, ``boxes [Q, 4]``) against T targets."""
        if self.class_cost == "focal":
            # The 1e-8 keeps the logs finite at p = 0 or 1 (Deformable DETR's matcher).
            prob = logits.float().sigmoid()[:, target_labels]
            present = self.focal_alpha * (1 - prob) ** self.focal_gamma * -(prob + 1e-8).log()
            absent = (1 - self.focal_alpha) * prob ** self.focal_gamma * -(1 - prob + 1e-8).log()
            cost = self.cost_class * (present - absent)
        else:
            cost = -self.cost_class * logits.float().softmax(-1)[:, target_labels]
        cost = cost + self.cost_bbox * torch.cdist(boxes.float(), target_boxes.float(), p=1)
        pred_xyxy = box_convert(boxes.float(), self.box_format, "xyxy")
        target_xyxy = box_convert(target_boxes.float(), self.box_format, "xyxy")
        return cost - self.cost_giou * generalized_box_iou(pred_xyxy, target_xyxy)

    @torch.no_grad()
    def __call__(
        self, pred_logits: torch.Tensor, pred_boxes: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]]
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match a batch.

        Args:
            pred_logits: ``[B, Q, C]`` class logits (C includes DETR's "no object" class).
            pred_boxes: ``[B, Q, 4]`` boxes in ``box_format``.
            targets: B dicts with ``"labels"`` ``[T_b]`` int64 and ``"boxes"`` ``[T_b, 4]`` in ``box_format``.

        Returns:
            Per image ``(query_indices, target_indices)``, two ``[min(Q, T_b)]`` int64 tensors; the
            query indices are sorted.
        """
        check_ndim(pred_logits, 3, "pred_logits", "HungarianMatcher", "[B, Q, C]")
        check_ndim(pred_boxes, 3, "pred_boxes", "HungarianMatcher", "[B, Q, 4]")
        check_last_dim(pred_boxes, 4, "pred_boxes", "HungarianMatcher")
        if len(targets) != pred_logits.shape[0]:
            raise ShapeError(f"HungarianMatcher: {pred_logits.shape[0]} images but {len(targets)} targets")
        # Imported here: scipy.optimize takes a noticeable time to import and only DETR needs it.
        from scipy.optimize import linear_sum_assignment

        results = []
        for b, target in enumerate(targets):
            labels, boxes = target["labels"], target["boxes"]
            if labels.numel() == 0:
                empty = torch.zeros((0,), dtype=torch.int64)
                results.append((empty, empty.clone()))
                continue
            check_last_dim(boxes, 4, f"targets[{b}]['boxes']", "HungarianMatcher")
            cost = self.cost_matrix(pred_logits[b], pred_boxes[b], labels, boxes)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            results.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols.astype(np.int64))))
        return results


# Object sizes of interest between the five FCOS levels P3-P7 (Tian et al. 2019, sec. 3.2).
FCOS_SIZE_BOUNDS = (64.0, 128.0, 256.0, 512.0)


def fcos_size_ranges(
    strides: torch.Tensor,
    level_strides: Sequence[int] = (8, 16, 32, 64, 128),
    bounds: Sequence[float] = FCOS_SIZE_BOUNDS,
) -> torch.Tensor:
    """Per point, the ``(lower, upper)`` range of ``max(l, t, r, b)`` its level regresses -> ``[A, 2]``.

    Level i covers ``[bounds[i-1], bounds[i]]`` with ``-1`` below the first and ``inf`` above the last.

    Args:
        strides: ``[A]`` stride of each point (from :func:`~cvzoo.ops.anchors.make_grid_points`).
        level_strides: increasing strides of the levels.
        bounds: ``len(level_strides) - 1`` increasing boundaries in pixels.
    """
    if len(bounds) != len(level_strides) - 1:
        raise ValueError(f"fcos_size_ranges: need {len(level_strides) - 1} bounds, got {len(bounds)}")
    level_strides_t = torch.tensor(level_strides, dtype=strides.dtype, device=strides.device)
    level = torch.searchsorted(level_strides_t, strides).clamp(max=len(level_strides) - 1)
    if not torch.equal(level_strides_t[level], strides):
        raise ValueError(
            f"fcos_size_ranges: strides contain values outside level_strides={tuple(level_strides)}"
        )
    edges = torch.tensor([-1.0, *bounds, math.inf], dtype=torch.float32, device=strides.device)
    return torch.stack((edges[level], edges[level + 1]), dim=-1)


def fcos_center_sampling(
    points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, radius: float = 1.5
) -> torch.Tensor:
    """Whether each point lies in the centre region of each GT -> ``[A, M]`` bool.

    The region is the GT centre ``+- radius * stride`` clipped to the GT box (the "center sampling"
    of the FCOS follow-up, which replaced "anywhere inside the box" and improved AP): a point is in it when
    ``max(|x - c_x|, |y - c_y|) < radius * stride`` and all of ``(l, t, r, b)`` are positive. Written in
    these terms (distances to the centre, not clipped corners) it gives torchvision's FCOS the same
    floating-point values at the region's edges.

    Args:
        points: ``[A, 2]`` ``(x, y)`` pixels.
        strides: ``[A]`` stride of each point.
        gt_boxes: ``[M, 4]`` xyxy pixels.
        radius: half-size of the region in strides.
    """
    _check_points(points, strides, gt_boxes, "fcos_center_sampling")
    centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    near = (points[:, None, :] - centres[None]).abs().max(dim=-1).values < radius * strides[:, None]
    return near & (_point_box_distances(points, gt_boxes).min(dim=-1).values > 0)


def fcos_centerness(distances: torch.Tensor) -> torch.Tensor:
    """FCOS centre-ness ``sqrt(min(l, r)/max(l, r) * min(t, b)/max(t, b))`` of ``[..., 4]`` ltrb -> ``[...]``."""
    check_last_dim(distances, 4, "distances", "fcos_centerness")
    left_right, top_bottom = distances[..., 0::2], distances[..., 1::2]
    ratio = (left_right.min(-1).values / left_right.max(-1).values.clamp(min=1e-12)) * (
        top_bottom.min(-1).values / top_bottom.max(-1).values.clamp(min=1e-12)
    )
    return ratio.clamp(min=0).sqrt()


def fcos_assign(
    points: torch.Tensor,
    strides: torch.Tensor,
    gt_boxes: torch.Tensor,
    size_ranges: torch.Tensor,
    radius: float | None = 1.5,
) -> torch.Tensor:
    """FCOS assignment (Tian et al. 2019, sec. 3.1-3.2): the GT index of each point, -1 for background.

    A point is a candidate for a GT when it lies inside the box (or its centre region when ``radius`` is
    given) and ``max(l, t, r, b)`` falls strictly inside its level's ``size_ranges``; among several
    candidates the GT of minimal area wins. Same semantics as torchvision's FCOS, including two details
    that decide its training targets: the range bounds are open (the paper writes them closed; a maximal
    distance exactly on a bound belongs to neither level), and the areas are ranked as the float32 values
    ``1e8 - area``, so two areas closer than the float32 spacing near 1e8 (8 px^2) tie and the first GT wins.

    Args:
        points: ``[A, 2]`` ``(x, y)`` pixels.
        strides: ``[A]`` stride of each point (the centre region's unit).
        gt_boxes: ``[M, 4]`` xyxy pixels.
        size_ranges: ``[A, 2]`` from :func:`fcos_size_ranges`.
        radius: centre-sampling radius in strides, or None to use the whole box.

    Returns:
        ``[A]`` int64.
    """
    _check_points(points, strides, gt_boxes, "fcos_assign")
    if size_ranges.shape != (points.shape[0], 2):
        raise ShapeError(
            f"fcos_assign: size_ranges must be [{points.shape[0]}, 2], got {list(size_ranges.shape)}"
        )
    if gt_boxes.shape[0] == 0:
        return torch.full((points.shape[0],), -1, dtype=torch.int64, device=points.device)
    ltrb = _point_box_distances(points, gt_boxes)
    if radius is None:
        candidate = ltrb.min(dim=-1).values > 0
    else:
        candidate = fcos_center_sampling(points, strides, gt_boxes, radius)
    max_dist = ltrb.max(dim=-1).values
    candidate &= (max_dist > size_ranges[:, :1]) & (max_dist < size_ranges[:, 1:])
    rank = candidate.to(torch.float32) * (1e8 - box_area(gt_boxes).to(torch.float32))[None]
    best, matched = rank.max(dim=1)
    return torch.where(best > 0, matched, torch.full_like(matched, -1))


def _point_box_distances(points: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """``[A, M, 4]`` distances ``(l, t, r, b)`` of every point to the sides of every box."""
    x, y = points[:, None, 0], points[:, None, 1]
    return torch.stack((x - gt_boxes[None, :, 0], y - gt_boxes[None, :, 1],
                        gt_boxes[None, :, 2] - x, gt_boxes[None, :, 3] - y), dim=-1)


def _check_points(points: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, where: str) -> None:
    check_ndim(points, 2, "points", where, "[A, 2]")
    check_last_dim(points, 2, "points", where)
    if strides.shape != (points.shape[0],):
        raise ShapeError(f"{where}: strides must be [{points.shape[0]}], got {list(strides.shape)}")
    check_ndim(gt_boxes, 2, "gt_boxes", where, "[M, 4]")
    check_last_dim(gt_boxes, 4, "gt_boxes", where)
