"""Confidence curves (brute force), confusion matrix (hand-built case) and plot files."""

from __future__ import annotations

import numpy as np
import pytest

from cvzoo.metrics.detection import DetectionEvaluator
from cvzoo.metrics.detection_confusion import detection_confusion_matrix
from cvzoo.metrics.detection_curves import confidence_curves
from cvzoo.metrics.plots_detection import (
    plot_confidence_curve,
    plot_detection_confusion_matrix,
    plot_pr_curve,
)


@pytest.mark.parametrize("seed", range(5))
def test_confidence_curves_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = rng.random(60).round(2)
    is_tp = rng.random(60) < 0.5
    labels = rng.integers(0, 3, 60)
    num_gt = np.array([40, 25, 0])
    conf, prec, rec, f1 = confidence_curves(scores, is_tp, labels, num_gt, num_points=101)
    for k in range(3):
        for i in range(0, 101, 7):
            kept = (labels == k) & (scores >= conf[i])
            tp = int((is_tp & kept).sum())
            expected_p = tp / kept.sum() if kept.any() else 1.0
            expected_r = tp / num_gt[k] if num_gt[k] else 0.0
            assert prec[k, i] == pytest.approx(expected_p)
            assert rec[k, i] == pytest.approx(expected_r)
            denom = expected_p + expected_r
            assert f1[k, i] == pytest.approx(2 * expected_p * expected_r / denom if denom else 0.0)


def test_confusion_matrix_hand_case():
    # Classes 0 and 1, background = 2. Image 0: gt0 found as 0; gt1 found as 0 (confusion);
    # gt0 missed; a false 1; a low-confidence detection dropped. Image 1: a crowd region covered by a
    # detection (neither counted) and a false 0.
    gt_image = np.array([0, 0, 0, 1])
    gt_boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60], [0, 0, 100, 100]], float)
    gt_labels = np.array([0, 1, 0, 1])
    gt_ignore = np.array([False, False, False, True])
    det_image = np.array([0, 0, 0, 0, 1, 1])
    det_boxes = np.array([[0, 0, 10, 11], [20, 20, 30, 30], [200, 200, 210, 210], [50, 50, 60, 60],
                          [0, 0, 100, 99], [300, 300, 310, 310]], float)
    det_scores = np.array([0.9, 0.8, 0.7, 0.1, 0.9, 0.6])
    det_labels = np.array([0, 0, 1, 0, 1, 0])
    m = detection_confusion_matrix(gt_image, gt_boxes, gt_labels, gt_ignore, det_image, det_boxes,
                                   det_scores, det_labels, num_classes=2)
    expected = np.array([[1, 1, 1],   # predicted 0: true 0, true 1 (confusion), false alarm
                         [0, 0, 1],   # predicted 1: false alarm
                         [1, 0, 0]])  # background: missed 0
    np.testing.assert_array_equal(m, expected)


def test_confusion_matrix_one_to_one_by_iou():
    # Two detections on one ground truth: the better overlap is matched, the other is a false alarm.
    m = detection_confusion_matrix(
        np.array([0]), np.array([[0, 0, 10, 10]], float), np.array([0]), np.array([False]),
        np.array([0, 0]), np.array([[0, 0, 10, 9], [0, 0, 10, 10]], float), np.array([0.5, 0.4]),
        np.array([1, 0]), num_classes=2)
    np.testing.assert_array_equal(m, [[1, 0, 0], [0, 0, 1], [0, 0, 0]])


def _evaluator() -> DetectionEvaluator:
    rng = np.random.default_rng(0)
    ev = DetectionEvaluator(["a", "b"])
    for _ in range(6):
        xy = rng.uniform(0, 100, (3, 2))
        boxes = np.concatenate([xy, xy + 20], axis=1)
        labels = rng.integers(0, 2, 3)
        ev.update([{"boxes": boxes + rng.normal(0, 2, boxes.shape), "scores": rng.random(3), "labels": labels}],
                  [{"boxes": boxes, "labels": labels}])
    return ev


def test_curves_from_evaluator_are_consistent():
    ev = _evaluator()
    curves = ev.curves()
    assert curves.precision.shape == (2, 1000) and curves.pr_precision.shape == (2, 101)
    out = ev.compute()
    mean_ap50 = np.mean([curves.pr_precision[k].mean() for k in range(2)])
    assert mean_ap50 == pytest.approx(out["AP50"], abs=1e-12)
    assert np.all(np.diff(curves.recall, axis=1) <= 1e-12)  # recall falls as the threshold rises


def test_plots_write_png(tmp_path):
    ev = _evaluator()
    curves = ev.curves()
    files = [plot_pr_curve(curves, tmp_path / "pr.png"),
             plot_confidence_curve(curves, tmp_path / "f1.png", "F1"),
             plot_confidence_curve(curves, tmp_path / "p.png", "P"),
             plot_detection_confusion_matrix(ev.confusion_matrix(), ev.class_names, tmp_path / "cm.png")]
    for path in files:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="metric must be one of"):
        plot_confidence_curve(curves, tmp_path / "x.png", "AP")
    with pytest.raises(ValueError, match=r"matrix must be \[3, 3\]"):
        plot_detection_confusion_matrix(np.zeros((2, 2)), ["a", "b"], tmp_path / "y.png")


def test_metrics_package_is_lazy():
    import subprocess
    import sys

    code = ("import sys, cvzoo.metrics as m; assert 'cvzoo.metrics.coco' not in sys.modules; "
            "m.coco_eval; m.DetectionEvaluator; "
            "assert 'matplotlib' not in sys.modules and 'torch' not in sys.modules, 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True)
