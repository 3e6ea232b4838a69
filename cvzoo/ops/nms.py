"""Non-maximum suppression: hard NMS (torchvision kernels) and Soft-NMS (Bodla et al. 2017)."""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from cvzoo.ops._checks import ShapeError, check_choice, check_last_dim, check_ndim


def _check_boxes_scores(boxes: torch.Tensor, scores: torch.Tensor, where: str) -> None:
    check_ndim(boxes, 2, "boxes", where, "[N, 4]")
    check_last_dim(boxes, 4, "boxes", where)
    check_ndim(scores, 1, "scores", where, "[N]")
    if scores.shape[0] != boxes.shape[0]:
        raise ShapeError(f"{where}: boxes has {boxes.shape[0]} rows but scores has {scores.shape[0]}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS: drop every box whose IoU with a higher-scoring kept box exceeds ``iou_threshold``.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        iou_threshold: boxes with IoU ``>`` this are suppressed.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.
    """
    _check_boxes_scores(boxes, scores, "nms")
    return torchvision.ops.nms(boxes, scores, iou_threshold)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS run independently per category ``idxs`` (boxes of different categories never suppress).

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]``.
        idxs: ``[N]`` int64 category (or image) of each box.
        iou_threshold: boxes with IoU ``>`` this are suppressed.

    Returns:
        ``[K]`` int64 indices of the kept boxes, by decreasing score.
    """
    _check_boxes_scores(boxes, scores, "batched_nms")
    if idxs.shape != scores.shape:
        raise ShapeError(f"batched_nms: idxs must have shape {list(scores.shape)}, got {list(idxs.shape)}")
    return torchvision.ops.batched_nms(boxes, scores, idxs, iou_threshold)


def _offset_per_category(boxes: torch.Tensor, idxs: torch.Tensor) -> torch.Tensor:
    # Shift each category to its own region of the plane so that boxes of different categories have
    # IoU 0; Soft-NMS then never decays across categories (1 - 0 and exp(0) are both 1).
    span = boxes.max() - boxes.min() + 1
    return boxes + (idxs.to(boxes) * span)[:, None]


def soft_nms(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    iou_threshold: float = 0.3,
    sigma: float = 0.5,
    score_threshold: float = 0.001,
    method: str = "linear",
    idxs: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft-NMS (Bodla et al. 2017, "Soft-NMS - Improving Object Detection With One Line of Code").

    Instead of deleting the neighbours of the selected box M, their scores are decayed:
    linear ``s_i *= 1 - IoU(M, b_i)`` when ``IoU > iou_threshold``; gaussian ``s_i *= exp(-IoU^2 / sigma)``
    for every remaining box. Boxes whose decayed score falls below ``score_threshold`` are discarded.
    The selection is sequential by nature; each step is one vectorised IoU row, so the cost is
    ``O(N * K)`` time and ``O(N)`` memory.

    Args:
        boxes: ``[N, 4]`` xyxy.
        scores: ``[N]`` (not modified).
        iou_threshold: ``N_t`` of the linear method (unused by the gaussian one).
        sigma: ``sigma`` of the gaussian method.
        score_threshold: drop boxes whose (decayed) score is below this.
        method: ``"linear"`` or ``"gaussian"``.
        idxs: optional ``[N]`` int64 categories; boxes only decay boxes of their own category.

    Returns:
        ``(keep, kept_scores)``: ``[K]`` int64 indices in selection order and ``[K]`` their decayed scores.
    """
    _check_boxes_scores(boxes, scores, "soft_nms")
    check_choice(method, ("linear", "gaussian"), "method", "soft_nms")
    if method == "gaussian" and sigma <= 0:
        raise ValueError(f"soft_nms: sigma must be > 0 for the gaussian method, got {sigma}")
    if idxs is not None:
        if idxs.shape != scores.shape:
            raise ShapeError(f"soft_nms: idxs must have shape {list(scores.shape)}, got {list(idxs.shape)}")
        if boxes.numel() > 0:
            boxes = _offset_per_category(boxes, idxs)

    # The selection is sequential, so the loop runs in NumPy float64 on the CPU: a few microseconds per
    # step instead of a dozen framework calls (and device syncs) per step.
    box_np = boxes.detach().cpu().double().numpy()
    current = scores.detach().cpu().double().numpy().copy()
    areas = (box_np[:, 2] - box_np[:, 0]) * (box_np[:, 3] - box_np[:, 1])
    active = np.flatnonzero(current >= score_threshold)
    keep: list[int] = []
    while active.size:
        best = int(active[np.argmax(current[active])])  # ties: lowest index
        keep.append(best)
        active = active[active != best]
        if not active.size:
            break
        top_left = np.maximum(box_np[best, :2], box_np[active, :2])
        bottom_right = np.minimum(box_np[best, 2:], box_np[active, 2:])
        inter = np.clip(bottom_right - top_left, 0, None).prod(axis=1)
        union = np.maximum(areas[best] + areas[active] - inter, np.finfo(np.float64).tiny)
        iou = inter / union
        if method == "linear":
            decay = np.where(iou > iou_threshold, 1 - iou, 1.0)
        else:
            decay = np.exp(-(iou * iou) / sigma)
        current[active] *= decay
        active = active[current[active] >= score_threshold]

    keep_np = np.asarray(keep, dtype=np.int64)
    kept_scores = torch.from_numpy(current[keep_np]).to(device=scores.device, dtype=scores.dtype)
    return torch.from_numpy(keep_np).to(scores.device), kept_scores
