import math

import pytest
import torch
import torchvision.ops as tvops

from cvzoo.ops import ShapeError, batched_nms, nms, soft_nms
from tests.ops.helpers import random_boxes

# A; B covers half of A (IoU 0.5); C disjoint; D inside A with IoU 0.2.
BOXES = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 2]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])


def reference_soft_nms(boxes, scores, nt, sigma, thresh, method):
    """Slow transcription of Algorithm 1 of Bodla et al. 2017 (one box at a time)."""
    boxes, scores = boxes.tolist(), scores.tolist()
    remaining = list(range(len(boxes)))
    keep, kept = [], []

    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = w * h
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union

    remaining = [i for i in remaining if scores[i] >= thresh]
    while remaining:
        m = max(remaining, key=lambda i: (scores[i], -i))
        keep.append(m)
        kept.append(scores[m])
        remaining.remove(m)
        for i in remaining:
            o = iou(boxes[m], boxes[i])
            if method == "linear":
                scores[i] *= (1 - o) if o > nt else 1.0
            else:
                scores[i] *= math.exp(-(o * o) / sigma)
        remaining = [i for i in remaining if scores[i] >= thresh]
    return keep, kept


def test_linear_hand_made():
    keep, scores = soft_nms(BOXES, SCORES, iou_threshold=0.3, method="linear")
    # A decays B to 0.8 * (1 - 0.5) but not D (IoU 0.2 <= Nt); then D (IoU 0.4 with B) decays B again.
    assert keep.tolist() == [0, 2, 3, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, 0.6, 0.8 * 0.5 * 0.6]))


def test_gaussian_hand_made():
    keep, scores = soft_nms(BOXES, SCORES, sigma=0.5, method="gaussian")
    # Every remaining box decays, even D at IoU 0.2 with A; D (0.554) then overtakes B (0.485)
    # and decays B by its IoU 0.4 (D's 20 px inside B's 50).
    d = 0.6 * math.exp(-0.04 / 0.5)
    b = 0.8 * math.exp(-0.25 / 0.5) * math.exp(-0.16 / 0.5)
    assert keep.tolist() == [0, 2, 3, 1]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.7, d, b]))


def test_score_threshold_drops_decayed_boxes():
    keep, scores = soft_nms(BOXES, SCORES, iou_threshold=0.3, score_threshold=0.5, method="linear")
    assert keep.tolist() == [0, 2, 3]  # B fell to 0.4 after A
    assert (scores >= 0.5).all()


@pytest.mark.parametrize("method", ["linear", "gaussian"])
def test_matches_slow_reference(method):
    boxes = random_boxes(60, seed=11, size=60.0)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(12))
    keep, kept = soft_nms(boxes, scores, 0.3, 0.5, 0.01, method)
    ref_keep, ref_kept = reference_soft_nms(boxes.double(), scores.double(), 0.3, 0.5, 0.01, method)
    assert keep.tolist() == ref_keep
    torch.testing.assert_close(kept, torch.tensor(ref_kept, dtype=torch.float32))
    assert torch.all(kept[:-1] >= kept[1:])  # selection order is by decayed score


def test_categories_do_not_decay_each_other():
    idxs = torch.tensor([0, 1, 0, 2])
    keep, scores = soft_nms(BOXES, SCORES, method="linear", idxs=idxs)
    assert sorted(keep.tolist()) == [0, 1, 2, 3]
    torch.testing.assert_close(scores, SCORES)  # the overlapping A, B, D are in three categories
    keep0, _ = soft_nms(BOXES, SCORES, method="linear", idxs=torch.zeros(4, dtype=torch.int64))
    keep_plain, _ = soft_nms(BOXES, SCORES, method="linear")
    assert keep0.tolist() == keep_plain.tolist()


def test_empty_and_bad_inputs():
    keep, scores = soft_nms(torch.zeros(0, 4), torch.zeros(0))
    assert keep.shape == (0,) and scores.shape == (0,)
    with pytest.raises(ShapeError, match="scores has 3"):
        soft_nms(BOXES, torch.zeros(3))
    with pytest.raises(ValueError, match="method"):
        soft_nms(BOXES, SCORES, method="cubic")


def test_hard_nms_wraps_torchvision():
    boxes = random_boxes(50, seed=13, size=40.0)
    scores = torch.rand(50, generator=torch.Generator().manual_seed(14))
    idxs = torch.randint(0, 3, (50,), generator=torch.Generator().manual_seed(15))
    assert nms(boxes, scores, 0.5).tolist() == tvops.nms(boxes, scores, 0.5).tolist()
    assert (
        batched_nms(boxes, scores, idxs, 0.5).tolist() == tvops.batched_nms(boxes, scores, idxs, 0.5).tolist()
    )
    assert nms(BOXES, SCORES, 0.45).tolist() == [0, 2, 3]
    with pytest.raises(ShapeError, match="idxs"):
        batched_nms(boxes, scores, idxs[:3], 0.5)
