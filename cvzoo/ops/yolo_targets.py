"""YOLO target assignment: the YOLOv3 best-anchor rule and the YOLOv5 shape-ratio rule with neighbour cells.

Both take ground truth for a whole batch as flat tensors (``gt_boxes [T, 4]`` cxcywh pixels plus
``gt_batch [T]``, the image of each box) and anchors as ``[L, A, 2]`` ``(w, h)`` pixels, ``A`` per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cvzoo.ops._checks import ShapeError, check_last_dim, check_ndim

# YOLOv5 neighbour offsets, subtracted from the centre before flooring: self, left, up, right, down.
_NEIGHBOUR_OFFSETS = ((0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (-0.5, 0.0), (0.0, -0.5))


@dataclass
class YoloV3Targets:
    """Targets of one level, all ``[B, A, H, W]``.

    Attributes:
        positive: cells/anchors responsible for a GT.
        ignore: neither positive nor negative (no objectness loss); negatives are ``~positive & ~ignore``.
        gt_index: index into the flat ``gt_boxes`` for positives, -1 elsewhere.
    """

    positive: torch.Tensor
    ignore: torch.Tensor
    gt_index: torch.Tensor


@dataclass
class YoloV5Targets:
    """Positives of one level as ``K`` flat entries (a GT may appear several times).

    Attributes:
        batch_idx, anchor_idx, grid_y, grid_x: ``[K]`` int64 position in the ``[B, A, H, W]`` output.
        box: ``[K, 4]`` ``(x, y, w, h)`` in grid units, xy relative to the cell's top-left corner
            (in ``(-0.5, 1.5)``, the range of the v5 decoder).
        anchor_wh: ``[K, 2]`` the anchor size in grid units.
        gt_index: ``[K]`` int64 index into the flat ``gt_boxes`` (for classes and further attributes).
    """

    batch_idx: torch.Tensor
    anchor_idx: torch.Tensor
    grid_y: torch.Tensor
    grid_x: torch.Tensor
    box: torch.Tensor
    anchor_wh: torch.Tensor
    gt_index: torch.Tensor


def _check_inputs(
    gt_boxes: torch.Tensor,
    gt_batch: torch.Tensor,
    anchors: torch.Tensor,
    strides: Sequence[float],
    feature_sizes: Sequence[Sequence[int]],
    batch_size: int,
    where: str,
) -> None:
    check_ndim(gt_boxes, 2, "gt_boxes", where, "[T, 4]")
    check_last_dim(gt_boxes, 4, "gt_boxes", where)
    if gt_batch.shape != (gt_boxes.shape[0],):
        raise ShapeError(f"{where}: gt_batch must be [{gt_boxes.shape[0]}], got {list(gt_batch.shape)}")
    check_ndim(anchors, 3, "anchors", where, "[L, A, 2]")
    check_last_dim(anchors, 2, "anchors", where)
    if len(strides) != anchors.shape[0] or len(feature_sizes) != anchors.shape[0]:
        raise ShapeError(
            f"{where}: anchors have {anchors.shape[0]} levels, got {len(strides)} strides and "
            f"{len(feature_sizes)} feature sizes"
        )
    if gt_batch.numel() and (int(gt_batch.min()) < 0 or int(gt_batch.max()) >= batch_size):
        raise ValueError(f"{where}: gt_batch values must lie in [0, {batch_size}), got {gt_batch.tolist()}")
    if gt_boxes.numel() and bool((gt_boxes[:, 2:] <= 0).any()):
        raise ValueError(f"{where}: gt_boxes need positive widths and heights (cxcywh)")


def _shape_iou(wh1: torch.Tensor, wh2: torch.Tensor) -> torch.Tensor:
    """IoU of boxes sharing one centre: ``[T, 2] x [K, 2] -> [T, K]``."""
    inter = torch.minimum(wh1[:, None], wh2[None]).prod(-1)
    return inter / (wh1.prod(-1)[:, None] + wh2.prod(-1)[None] - inter)


def _cell(centres: torch.Tensor, stride: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    grid = (centres / stride).floor().long()
    return grid[:, 1].clamp(0, height - 1), grid[:, 0].clamp(0, width - 1)


def yolo_v3_assign(
    gt_boxes: torch.Tensor,
    gt_batch: torch.Tensor,
    anchors: torch.Tensor,
    strides: Sequence[float],
    feature_sizes: Sequence[Sequence[int]],
    batch_size: int,
    ignore_thresh: float = 0.5,
) -> list[YoloV3Targets]:
    """YOLOv3 assignment (Redmon & Farhadi 2018, sec. 2.1).

    For each GT, the anchor (over all levels) whose shape best matches it - IoU of the two boxes
    centred on one point - is positive at the cell containing the GT centre. Any other anchor whose
    shape IoU exceeds ``ignore_thresh`` is ignored at the GT's cell of its own level (it is "not the best
    but overlaps by more than the threshold"). Everything else is negative. When two GTs claim the same
    cell and anchor, the one with the higher shape IoU (then the later one) wins.

    Args:
        gt_boxes: ``[T, 4]`` cxcywh pixels.
        gt_batch: ``[T]`` int64 image index of each GT.
        anchors: ``[L, A, 2]`` anchor ``(w, h)`` pixels, e.g. the nine COCO anchors as ``[3, 3, 2]``.
        strides: ``[L]`` strides of the levels.
        feature_sizes: ``[L]`` ``(H, W)`` of the levels.
        batch_size: number of images ``B``.
        ignore_thresh: shape-IoU above which a non-best anchor is ignored.

    Returns:
        One :class:`YoloV3Targets` per level.
    """
    _check_inputs(gt_boxes, gt_batch, anchors, strides, feature_sizes, batch_size, "yolo_v3_assign")
    num_levels, num_anchors = anchors.shape[:2]
    device = gt_boxes.device
    ious = _shape_iou(gt_boxes[:, 2:], anchors.reshape(-1, 2).to(gt_boxes))  # [T, L*A]
    best_iou, best = ious.max(dim=1)
    # Priority of each GT when several claim one slot: higher IoU, then later index.
    priority = torch.empty_like(best)
    priority[torch.argsort(best_iou, stable=True)] = torch.arange(best.numel(), device=device)
    ignored = ious > ignore_thresh
    ignored[torch.arange(best.numel(), device=device), best] = False

    results = []
    for level, ((height, width), stride) in enumerate(zip(feature_sizes, strides)):
        shape = (batch_size, num_anchors, height, width)
        gy, gx = _cell(gt_boxes[:, :2], float(stride), height, width)

        def slot(anchor_idx: torch.Tensor, gt: torch.Tensor, gy=gy, gx=gx, height=height, width=width):
            return ((gt_batch[gt] * num_anchors + anchor_idx) * height + gy[gt]) * width + gx[gt]

        gt_pos = torch.where(best // num_anchors == level)[0]
        keys = slot(best[gt_pos] % num_anchors, gt_pos)
        winner = torch.full((batch_size * num_anchors * height * width,), -1, dtype=torch.long, device=device)
        winner.scatter_reduce_(0, keys, priority[gt_pos], reduce="amax")
        wins = winner[keys] == priority[gt_pos]
        gt_index = torch.full_like(winner, -1)
        gt_index[keys[wins]] = gt_pos[wins]

        gt_ign, k_ign = torch.where(ignored[:, level * num_anchors : (level + 1) * num_anchors])
        ignore = torch.zeros_like(winner, dtype=torch.bool)
        ignore[slot(k_ign, gt_ign)] = True
        positive = gt_index >= 0
        results.append(
            YoloV3Targets(
                positive=positive.view(shape),
                ignore=(ignore & ~positive).view(shape),
                gt_index=gt_index.view(shape),
            )
        )
    return results


def yolo_v5_build_targets(
    gt_boxes: torch.Tensor,
    gt_batch: torch.Tensor,
    anchors: torch.Tensor,
    strides: Sequence[float],
    feature_sizes: Sequence[Sequence[int]],
    batch_size: int,
    anchor_t: float = 4.0,
) -> list[YoloV5Targets]:
    """YOLOv5 targets: every anchor whose shape is close enough, at the centre cell and two neighbours.

    An anchor matches a GT when both ``w / w_a`` and ``h / h_a`` lie in ``[1 / anchor_t, anchor_t]`` (the
    v5 decoder's ``(2 sigmoid)^2`` can only scale an anchor by 0..4), on every level independently. Each
    match is placed at the centre's cell and at the two neighbour cells nearest to the centre (left or
    right, up or down; not beyond the grid), which the decoder's ``2 sigmoid - 0.5`` range can reach.
    This multiplies positives about threefold and speeds up training.

    Args:
        gt_boxes: ``[T, 4]`` cxcywh pixels.
        gt_batch: ``[T]`` int64 image index of each GT.
        anchors: ``[L, A, 2]`` anchor ``(w, h)`` pixels.
        strides: ``[L]`` strides of the levels.
        feature_sizes: ``[L]`` ``(H, W)`` of the levels.
        batch_size: number of images ``B``.
        anchor_t: maximal size ratio between a GT and its anchors.

    Returns:
        One :class:`YoloV5Targets` per level.
    """
    _check_inputs(gt_boxes, gt_batch, anchors, strides, feature_sizes, batch_size, "yolo_v5_build_targets")
    if anchor_t <= 1:
        raise ValueError(f"yolo_v5_build_targets: anchor_t must be > 1, got {anchor_t}")
    device = gt_boxes.device
    offsets = torch.tensor(_NEIGHBOUR_OFFSETS, device=device, dtype=gt_boxes.dtype)
    results = []
    for level, ((height, width), stride) in enumerate(zip(feature_sizes, strides)):
        level_anchors = anchors[level].to(gt_boxes) / stride  # grid units
        centre, size = gt_boxes[:, :2] / stride, gt_boxes[:, 2:] / stride
        ratio = size[None] / level_anchors[:, None]  # [A, T, 2]
        anchor_idx, gt = torch.where(torch.maximum(ratio, 1 / ratio).max(dim=-1).values < anchor_t)
        centre_m = centre[gt]
        frac = centre_m % 1
        inverse = torch.tensor([width, height], device=device, dtype=gt_boxes.dtype) - centre_m
        near_low = (frac < 0.5) & (centre_m > 1)  # left / up neighbour exists and is the nearer one
        near_high = ((inverse % 1) < 0.5) & (inverse > 1)  # right / down
        use = torch.stack(
            (
                torch.ones_like(near_low[:, 0]),
                near_low[:, 0],
                near_low[:, 1],
                near_high[:, 0],
                near_high[:, 1],
            )
        )  # [5, P]
        which, pair = torch.where(use)
        cell = (centre_m[pair] - offsets[which]).floor().long()
        grid_x = cell[:, 0].clamp(0, width - 1)
        grid_y = cell[:, 1].clamp(0, height - 1)
        cell_xy = torch.stack((grid_x, grid_y), dim=-1).to(gt_boxes)
        results.append(
            YoloV5Targets(
                batch_idx=gt_batch[gt[pair]].long(),
                anchor_idx=anchor_idx[pair],
                grid_y=grid_y,
                grid_x=grid_x,
                box=torch.cat((centre_m[pair] - cell_xy, size[gt[pair]]), dim=-1),
                anchor_wh=level_anchors[anchor_idx[pair]],
                gt_index=gt[pair],
            )
        )
    return results
