"""Detection confusion matrix with a background row and column.

Detections above a confidence threshold are paired one-to-one with ground truths, class-agnostic,
by greedy descending IoU (pairs above an IoU threshold). A matched pair counts at
``[predicted class, true class]`` (so class confusions show off the diagonal); an unmatched
ground truth counts as "predicted background" ``[K, true]`` (a miss), an unmatched detection
as ``[predicted, K]`` (a false alarm). Ignored ground truths (crowd, difficult) are removed, and a
detection whose best partner is one of them is dropped rather than called a false alarm.
"""

from __future__ import annotations

import numpy as np

from cvzoo.metrics.box_overlap import iou_pairs_xyxy


def _pairs_same_image(image_a: np.ndarray, image_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``(i, j)`` with ``image_a[i] == image_b[j]``."""
    order_b = np.argsort(image_b, kind="stable")
    sorted_b = image_b[order_b]
    lo = np.searchsorted(sorted_b, image_a, "left")
    counts = np.searchsorted(sorted_b, image_a, "right") - lo
    idx_a = np.repeat(np.arange(image_a.size), counts)
    offsets = np.arange(idx_a.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return idx_a, order_b[np.repeat(lo, counts) + offsets]


def detection_confusion_matrix(
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_ignore: np.ndarray,
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    num_classes: int,
    iou_threshold: float = 0.45,
    conf_threshold: float = 0.25,
) -> np.ndarray:
    """Counts ``[K + 1, K + 1]``: rows predicted class, columns true class, index ``K`` = background.

    Args:
        gt_image: ``[G]`` image index of each ground truth.
        gt_boxes: ``[G, 4]`` boxes ``xyxy``.
        gt_labels: ``[G]`` class indices.
        gt_ignore: ``[G]`` bool, crowd / difficult.
        det_image: ``[D]`` image index.  det_boxes: ``[D, 4]`` ``xyxy``.
        det_scores: ``[D]``.  det_labels: ``[D]`` class indices.
        num_classes: ``K``.
        iou_threshold: a pair must overlap with IoU > this.
        conf_threshold: detections with score >= this take part.

    Returns:
        int64 count matrix.
    """
    k = num_classes
    matrix = np.zeros((k + 1, k + 1), dtype=np.int64)
    keep = det_scores >= conf_threshold
    det_image, det_boxes, det_labels = det_image[keep], det_boxes[keep], det_labels[keep]
    d_idx, g_idx = _pairs_same_image(det_image, gt_image)
    iou = iou_pairs_xyxy(det_boxes[d_idx], gt_boxes[g_idx])
    close = iou > iou_threshold
    d_idx, g_idx, iou = d_idx[close], g_idx[close], iou[close]
    # Greedy one-to-one assignment, regular ground truths first, then by descending IoU.
    order = np.lexsort((-iou, gt_ignore[g_idx]))
    det_used = np.zeros(det_labels.size, dtype=bool)
    gt_used = np.zeros(gt_labels.size, dtype=bool)
    for d, g in zip(d_idx[order].tolist(), g_idx[order].tolist()):
        if det_used[d] or (gt_used[g] and not gt_ignore[g]):
            continue
        det_used[d] = True
        gt_used[g] = True
        if not gt_ignore[g]:
            matrix[det_labels[d], gt_labels[g]] += 1
    regular = ~gt_ignore
    np.add.at(matrix, (k, gt_labels[regular & ~gt_used]), 1)
    np.add.at(matrix, (det_labels[~det_used], k), 1)
    return matrix
