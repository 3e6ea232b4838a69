import itertools
import math

import pytest
import torch
from torchvision.models.detection._utils import Matcher

from cvzoo.ops import (
    HungarianMatcher,
    IoUMatcher,
    ShapeError,
    box_convert,
    box_iou,
    fcos_assign,
    fcos_center_sampling,
    fcos_centerness,
    fcos_size_ranges,
    generalized_box_iou,
    make_grid_points,
)
from tests.ops.helpers import random_boxes


@pytest.mark.parametrize(
    ("high", "low", "low_quality"), [(0.7, 0.3, True), (0.5, 0.4, False), (0.5, 0.5, True)]
)
def test_iou_matcher_matches_torchvision(high, low, low_quality):
    gts, anchors = random_boxes(6, seed=0, size=50.0), random_boxes(200, seed=1, size=50.0)
    quality = box_iou(gts, anchors)
    ours = IoUMatcher(high, low, low_quality)(quality)
    ref = Matcher(high, low, low_quality)(quality)
    assert torch.equal(ours, ref)
    assert {-1, -2}.issuperset(set(ours[ours < 0].tolist()))


def test_iou_matcher_hand_made():
    quality = torch.tensor([[0.8, 0.45, 0.2, 0.1], [0.1, 0.5, 0.35, 0.3]])
    assert IoUMatcher(0.7, 0.4)(quality).tolist() == [0, -2, -1, -1]
    # Low-quality matches: GT 1's best anchor (1) is kept with ITS best GT (1, IoU 0.5)
    assert IoUMatcher(0.7, 0.4, True)(quality).tolist() == [0, 1, -1, -1]
    # No GT: everything is background
    assert IoUMatcher(0.5, 0.4)(torch.zeros(0, 3)).tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="low_threshold"):
        IoUMatcher(0.3, 0.5)
    with pytest.raises(ShapeError, match=r"\[M, N\]"):
        IoUMatcher(0.5, 0.4)(torch.zeros(3))


def test_hungarian_matcher_is_optimal():
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 5, 4, generator=generator)
    boxes = torch.rand(2, 5, 4, generator=generator) * 0.4 + torch.tensor([0.3, 0.3, 0.1, 0.1])
    targets = [
        {"labels": torch.tensor([1, 3, 0]), "boxes": torch.rand(3, 4, generator=generator) * 0.3 + 0.2},
        {"labels": torch.zeros(0, dtype=torch.int64), "boxes": torch.zeros(0, 4)},
    ]
    matcher = HungarianMatcher(1.0, 5.0, 2.0)
    (queries, tgts), (empty_q, empty_t) = matcher(logits, boxes, targets)
    assert empty_q.numel() == 0 and empty_t.numel() == 0
    # Cost from the DETR formula, written out here
    prob = logits[0].softmax(-1)
    giou = generalized_box_iou(
        box_convert(boxes[0], "cxcywh", "xyxy"), box_convert(targets[0]["boxes"], "cxcywh", "xyxy")
    )
    l1 = (boxes[0][:, None] - targets[0]["boxes"][None]).abs().sum(-1)
    cost = -prob[:, targets[0]["labels"]] + 5 * l1 - 2 * giou
    best = min(
        itertools.permutations(range(5), 3),
        key=lambda rows: sum(cost[r, c].item() for c, r in enumerate(rows)),
    )
    got = dict(zip(tgts.tolist(), queries.tolist()))
    assert [got[c] for c in range(3)] == list(best)
    assert queries.tolist() == sorted(queries.tolist())
    with pytest.raises(ShapeError, match="2 images but 1 targets"):
        matcher(logits, boxes, targets[:1])


def test_hungarian_focal_class_cost_by_hand():
    """The focal class cost (Deformable DETR, RT-DETR): with equal boxes only the class decides. Query 0
    scores class 0 at p = 0.5: cost 2 (0.25 * 0.25 * log 2 - 0.75 * 0.25 * log 2) = -0.25 log 2 (up to the
    1e-8 in the logs); a query sure of the class (p ~ 1) costs less and takes the object."""
    logits = torch.tensor([[[0.0, -9.0], [9.0, -9.0]]])
    boxes = torch.full((1, 2, 4), 0.5)
    targets = [{"labels": torch.tensor([0]), "boxes": torch.full((1, 4), 0.5)}]
    matcher = HungarianMatcher(2.0, 5.0, 2.0, class_cost="focal", focal_alpha=0.25, focal_gamma=2.0)
    cost = matcher.cost_matrix(logits[0], boxes[0], targets[0]["labels"], targets[0]["boxes"])
    torch.testing.assert_close(cost[0, 0], torch.tensor(-0.25 * math.log(2.0) - 2.0), rtol=0, atol=1e-6)
    (queries, objects), = matcher(logits, boxes, targets)
    assert queries.tolist() == [1] and objects.tolist() == [0]
    with pytest.raises(ValueError, match="class_cost"):
        HungarianMatcher(class_cost="sigmoid")


def test_fcos_center_sampling_and_ranges():
    points, strides = make_grid_points([(8, 8), (4, 4)], [8, 16])  # 64x64 image
    gt = torch.tensor([[4.0, 4.0, 60.0, 36.0]])  # centre (32, 20)
    inside = fcos_center_sampling(points, strides, gt, radius=1.5)
    # level 8: centre region x in (20, 44), y in (8, 32) -> x centres 28, 36 and y centres 12, 20, 28
    level8 = points[:64][inside[:64, 0]]
    assert sorted(level8[:, 0].unique().tolist()) == [28.0, 36.0]
    assert sorted(level8[:, 1].unique().tolist()) == [12.0, 20.0, 28.0]
    # level 16: region x in (8, 56), y clipped to (4, 36) -> x 24, 40 ; y 8, 24
    level16 = points[64:][inside[64:, 0]]
    assert level16.tolist() == [[24.0, 8.0], [40.0, 8.0], [24.0, 24.0], [40.0, 24.0]]
    ranges = fcos_size_ranges(strides, level_strides=(8, 16), bounds=(32.0,))
    assert ranges[0].tolist() == [-1.0, 32.0] and ranges[-1].tolist() == [32.0, math.inf]
    with pytest.raises(ValueError, match="level_strides"):
        fcos_size_ranges(torch.tensor([8.0, 12.0]), level_strides=(8, 16), bounds=(32.0,))


def test_fcos_assign_scale_and_min_area():
    points, strides = make_grid_points([(8, 8), (4, 4)], [8, 16])
    ranges = fcos_size_ranges(strides, level_strides=(8, 16), bounds=(20.0,))
    big = [0.0, 0.0, 64.0, 64.0]  # max(l,t,r,b) > 20 everywhere -> only on level 16
    small = [16.0, 16.0, 32.0, 32.0]  # max distance <= 12 -> only on level 8
    matched = fcos_assign(points, strides, torch.tensor([big, small]), ranges, radius=None)
    level8, level16 = matched[:64], matched[64:]
    # level-8 points inside the small box (centres 20, 28) match it; big is out of range there
    assert sorted(torch.where(level8 == 1)[0].tolist()) == [18, 19, 26, 27]
    assert (level8[level8 != 1] == -1).all()
    # level 16: points inside the small box would prefer it (smaller area) but it is out of range
    assert (level16 == 0).all()
    # overlapping GTs on one level: the smaller one wins
    nested = torch.tensor([[0.0, 0, 40, 40], [8.0, 8, 24, 24]])
    wide = torch.tensor([[-1.0, 1e9]]).expand(64, 2)
    out = fcos_assign(points[:64], strides[:64], nested, wide, radius=None)
    assert out[9].item() == 1 and out[0].item() == 0 and out[63].item() == -1
    assert (fcos_assign(points, strides, torch.zeros(0, 4), ranges) == -1).all()


def test_fcos_centerness():
    ltrb = torch.tensor([[5.0, 5.0, 5.0, 5.0], [2.0, 1.0, 8.0, 4.0]])
    torch.testing.assert_close(fcos_centerness(ltrb), torch.tensor([1.0, math.sqrt(0.25 * 0.25)]))


def test_fcos_assign_bounds_are_open_and_areas_rank_as_torchvision():
    """torchvision's FCOS semantics: a maximal distance exactly on a level bound matches neither level, and
    areas tying in float32 as ``1e8 - area`` (259 and 256 px^2) go to the first box."""
    points = torch.tensor([[20.0, 20.0]])
    strides = torch.tensor([8.0])
    exactly = torch.tensor([[0.0, 0.0, 40.0, 40.0]])  # max(l, t, r, b) = 20
    assert fcos_assign(points, strides, exactly, torch.tensor([[0.0, 20.0]]), radius=None).item() == -1
    assert fcos_assign(points, strides, exactly, torch.tensor([[20.0, 40.0]]), radius=None).item() == -1
    assert fcos_assign(points, strides, exactly, torch.tensor([[0.0, 20.5]]), radius=None).item() == 0
    tied = torch.tensor([[12.0, 12.0, 28.0, 28.1875], [12.0, 12.0, 28.0, 28.0]])
    assert fcos_assign(points, strides, tied, torch.tensor([[0.0, 64.0]]), radius=None).item() == 0
    distinct = torch.tensor([[12.0, 12.0, 28.0, 29.0], [12.0, 12.0, 28.0, 28.0]])  # 272 vs 256: the smaller
    assert fcos_assign(points, strides, distinct, torch.tensor([[0.0, 64.0]]), radius=None).item() == 1
