"""Per-class precision / recall / F1 as functions of the confidence threshold, and PR curves.

Given which detections are true positives at one IoU threshold, keeping only detections with
score >= c gives, for every class, a precision P(c), a recall R(c) and F1(c) = 2PR / (P + R).
Reports such as the YOLO validation table quote P and R at the single threshold that maximises
the F1 averaged over classes; the curves themselves are the usual diagnostic plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DetectionCurves:
    """Curves for ``K`` classes.

    Attributes:
        confidence: ``[C]`` confidence thresholds (0..1).
        precision: ``[K, C]`` precision of the detections with score >= threshold (1 when none).
        recall: ``[K, C]`` recall at each threshold.
        f1: ``[K, C]`` F1 at each threshold.
        pr_recall: ``[R]`` recall points of the PR curves.
        pr_precision: ``[K, R]`` interpolated precision (COCO envelope) at IoU 0.5, -1 without GT.
        num_gt: ``[K]`` ground truths per class (non-ignored).
        class_names: the ``K`` names.
    """

    confidence: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    pr_recall: np.ndarray
    pr_precision: np.ndarray
    num_gt: np.ndarray
    class_names: tuple[str, ...]

    @property
    def best_index(self) -> int:
        """Index into ``confidence`` of the highest F1 averaged over classes with ground truth."""
        has_gt = self.num_gt > 0
        if not has_gt.any():
            return 0
        return int(np.argmax(self.f1[has_gt].mean(axis=0)))


def confidence_curves(
    scores: np.ndarray,
    is_tp: np.ndarray,
    labels: np.ndarray,
    num_gt: np.ndarray,
    num_points: int = 1000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Step curves P(c), R(c), F1(c) per class, evaluated exactly (no interpolation).

    Args:
        scores: ``[D]`` detection scores (ignored detections already removed).
        is_tp: ``[D]`` bool, true positive at the chosen IoU threshold.
        labels: ``[D]`` int class index.
        num_gt: ``[K]`` ground truths per class.
        num_points: thresholds evenly spaced on [0, 1].

    Returns:
        ``(confidence [C], precision [K, C], recall [K, C], f1 [K, C])``.
    """
    num_classes = num_gt.size
    conf = np.linspace(0.0, 1.0, num_points)
    precision = np.ones((num_classes, num_points))
    recall = np.zeros((num_classes, num_points))
    for k in range(num_classes):
        mask = labels == k
        s = scores[mask]
        order = np.argsort(-s, kind="stable")
        s, tp = s[order], is_tp[mask][order]
        tp_cum = np.cumsum(tp)
        # Detections kept at threshold c: those with score >= c, a prefix of the ranking.
        kept = np.searchsorted(-s, -conf, side="right")
        some = kept > 0
        tp_at = tp_cum[kept[some] - 1]
        precision[k, some] = tp_at / kept[some]
        if num_gt[k] > 0:
            recall[k, some] = tp_at / num_gt[k]
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-16)
    return conf, precision, recall, f1
