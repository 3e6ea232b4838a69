"""Segmentation metrics: a hand-computed case, a direct NumPy computation, ignore label, merging."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cvzoo.metrics.segmentation import SegmentationMetrics, confusion_matrix, metrics_from_confusion

# Many small ops: one compute thread (see tests/conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

TARGET = np.array([[0, 0, 1, 1], [0, 2, 2, 1], [255, 2, 2, 2]])
PRED = np.array([[0, 1, 1, 1], [0, 2, 1, 1], [0, 2, 2, 0]])


def test_hand_computed_example():
    """cm = [[2,1,0],[0,3,0],[1,1,3]] (the 255 pixel left out): t = (3,3,5), p = (3,5,3), n_ii = (2,3,3)."""
    metrics = SegmentationMetrics(3, ["bg", "a", "b"])
    metrics.update(torch.from_numpy(PRED), torch.from_numpy(TARGET))
    result = metrics.compute()
    np.testing.assert_array_equal(result["confusion_matrix"], [[2, 1, 0], [0, 3, 0], [1, 1, 3]])
    assert result["pixel_acc"] == pytest.approx(8 / 11)
    assert result["mean_acc"] == pytest.approx((2 / 3 + 1 + 3 / 5) / 3)
    np.testing.assert_allclose(result["iou"], [2 / 4, 3 / 5, 3 / 5])
    assert result["mIoU"] == pytest.approx(17 / 30)
    assert result["fwIoU"] == pytest.approx((3 * 0.5 + 3 * 0.6 + 5 * 0.6) / 11)
    np.testing.assert_allclose(result["dice"], [4 / 6, 6 / 8, 6 / 8])
    assert result["mDice"] == pytest.approx((4 / 6 + 0.75 + 0.75) / 3)
    assert [row["class"] for row in result["per_class"]] == ["bg", "a", "b"]
    assert "mIoU 0.5667" in result["table"]


def test_absent_classes():
    """A class neither present nor predicted is undefined (left out); predicted but absent -> IoU 0."""
    result = SegmentationMetrics(5).compute()
    assert math.isnan(result["mIoU"]) and math.isnan(result["pixel_acc"])
    metrics = SegmentationMetrics(5)
    pred = PRED.copy()
    pred[0, 0] = 4  # one background pixel predicted as class 4, which is absent from the target
    metrics.update(pred, TARGET)
    result = metrics.compute()
    assert math.isnan(result["iou"][3]) and result["iou"][4] == 0.0
    assert result["mIoU"] == pytest.approx((1 / 4 + 3 / 5 + 3 / 5 + 0) / 4)


def _direct(preds: np.ndarray, targets: np.ndarray, k: int) -> dict[str, float]:
    valid = targets != 255
    p, t = preds[valid], targets[valid]
    ious, dices, accs, weights = [], [], [], []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        if union:
            ious.append(inter / union)
            dices.append(2 * inter / (np.sum(p == c) + np.sum(t == c)))
        if np.sum(t == c):
            accs.append(inter / np.sum(t == c))
        weights.append(np.sum(t == c) * (inter / union if union else 0.0))
    return {"pixel_acc": np.mean(p == t), "mIoU": np.mean(ious), "mDice": np.mean(dices),
            "mean_acc": np.mean(accs), "fwIoU": np.sum(weights) / len(t)}


@pytest.mark.parametrize("seed", range(4))
def test_random_batches_equal_direct_numpy(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    batches = [(rng.integers(0, k, (3, 9, 11)), np.where(rng.random((3, 9, 11)) < 0.1, 255,
                                                         rng.integers(0, k, (3, 9, 11)))) for _ in range(3)]
    metrics = SegmentationMetrics(k)
    for pred, target in batches:
        metrics.update(torch.from_numpy(pred), torch.from_numpy(target))
    result = metrics.compute()
    preds = np.concatenate([b[0].ravel() for b in batches])
    targets = np.concatenate([b[1].ravel() for b in batches])
    for key, value in _direct(preds, targets, k).items():
        assert result[key] == pytest.approx(value), key


def test_merge_equals_single_accumulator():
    rng = np.random.default_rng(0)
    preds, targets = rng.integers(0, 4, (6, 8, 8)), rng.integers(0, 4, (6, 8, 8))
    whole = SegmentationMetrics(4)
    whole.update(preds, targets)
    ranks = [SegmentationMetrics(4), SegmentationMetrics(4)]
    ranks[0].update(preds[:2], targets[:2])
    ranks[1].update(preds[2:], targets[2:])
    merged = SegmentationMetrics(4)
    for rank in ranks:
        merged.merge(rank.state())
    np.testing.assert_array_equal(merged.matrix, whole.matrix)
    assert merged.compute()["mIoU"] == whole.compute()["mIoU"]
    with pytest.raises(ValueError, match="cannot merge"):
        merged.merge(np.zeros((3, 3)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="differs from target shape"):
        confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match="target value 7"):
        confusion_matrix(np.zeros(4), np.array([0, 1, 7, 255]), 3)
    with pytest.raises(ValueError, match="predicted class 3"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="square"):
        metrics_from_confusion(np.zeros((2, 3)))
