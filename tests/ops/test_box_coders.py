import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

from cvzoo.ops import (
    DeltaBoxCoder,
    ShapeError,
    SSDBoxCoder,
    bbox2dist,
    box_convert,
    dist2bbox,
    yolo_decode_v3,
    yolo_decode_v5,
    yolo_grid,
)
from tests.ops.helpers import random_boxes


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_delta_coder_matches_torchvision(weights):
    anchors, boxes = random_boxes(20, seed=0), random_boxes(20, seed=1)
    ours = DeltaBoxCoder(weights)
    ref = BoxCoder(weights)
    deltas = ours.encode(boxes, anchors)
    torch.testing.assert_close(deltas, ref.encode_single(boxes, anchors))
    # Large deltas exercise the clamp of the log-size terms.
    wild = torch.randn(20, 4, generator=torch.Generator().manual_seed(2)) * 20
    torch.testing.assert_close(ours.decode(wild, anchors), ref.decode_single(wild, anchors))
    torch.testing.assert_close(ours.decode(deltas, anchors), boxes, rtol=1e-5, atol=1e-4)


def test_delta_coder_hand_made_and_broadcast():
    anchor = torch.tensor([0.0, 0, 10, 20])
    box = torch.tensor([5.0, 0, 25, 20])  # centre moves 10 px right, width doubles
    deltas = DeltaBoxCoder().encode(box, anchor)
    torch.testing.assert_close(deltas, torch.tensor([1.0, 0.0, math.log(2.0), 0.0]))
    # [B, A, 4] deltas against [A, 4] anchors
    batch = DeltaBoxCoder().decode(torch.zeros(3, 5, 4), random_boxes(5, seed=3))
    torch.testing.assert_close(batch, random_boxes(5, seed=3).expand(3, 5, 4))
    with pytest.raises(ShapeError, match="anchors"):
        DeltaBoxCoder().encode(box, torch.zeros(3))


def test_ssd_coder_uses_variances():
    default_box = torch.tensor([[0.5, 0.5, 0.2, 0.4]])  # cxcywh, normalised
    gt = torch.tensor([[0.52, 0.5, 0.4, 0.4]])
    coder = SSDBoxCoder((0.1, 0.2))
    deltas = coder.encode(box_convert(gt, "cxcywh", "xyxy"), box_convert(default_box, "cxcywh", "xyxy"))
    # (0.02 / 0.2) / 0.1 = 1, log(0.4 / 0.2) / 0.2
    torch.testing.assert_close(deltas, torch.tensor([[1.0, 0.0, math.log(2) / 0.2, 0.0]]))
    assert coder.weights == (10.0, 10.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="variances"):
        SSDBoxCoder((0.1, 0.0))


def test_yolo_decoders_hand_made():
    grid = yolo_grid(2, 3)
    assert grid.shape == (2, 3, 2) and grid[1, 2].tolist() == [2, 1]
    anchors = torch.tensor([10.0, 20.0])
    raw = torch.zeros(2, 3, 4)
    v3 = yolo_decode_v3(raw, grid, anchors, stride=8)
    # sigmoid(0) = 0.5: the cell centre; exp(0) = 1: the anchor size
    torch.testing.assert_close(v3[1, 2], torch.tensor([20.0, 12.0, 10.0, 20.0]))
    v5 = yolo_decode_v5(raw, grid, anchors, stride=8)
    # 2 * 0.5 - 0.5 = 0.5 and (2 * 0.5)^2 = 1: the same point at zero input
    torch.testing.assert_close(v5, v3)
    big = torch.full((1, 1, 4), 50.0)
    v5_big = yolo_decode_v5(big, grid[:1, :1], anchors, stride=8)
    # centre reaches 1.5 cells, size saturates at 4x the anchor
    torch.testing.assert_close(v5_big[0, 0], torch.tensor([12.0, 12.0, 40.0, 80.0]))
    v3_raw = torch.tensor([[[0.3, -0.7, 0.2, -0.1]]])
    expected = torch.tensor(
        [
            (torch.sigmoid(torch.tensor(0.3)) + 0) * 8,
            torch.sigmoid(torch.tensor(-0.7)) * 8,
            10 * math.exp(0.2),
            20 * math.exp(-0.1),
        ]
    )
    torch.testing.assert_close(yolo_decode_v3(v3_raw, grid[:1, :1], anchors, 8)[0, 0], expected)


def test_ltrb_round_trip():
    points = torch.tensor([[10.0, 10.0], [30.0, 5.0]])
    boxes = torch.tensor([[0.0, 2.0, 14.0, 20.0], [20.0, 0.0, 50.0, 10.0]])
    distance = bbox2dist(points, boxes)
    assert distance.tolist() == [[10, 8, 4, 10], [10, 5, 20, 5]]
    torch.testing.assert_close(dist2bbox(distance, points), boxes)
    torch.testing.assert_close(dist2bbox(distance, points, xywh=True), box_convert(boxes, "xyxy", "cxcywh"))
    # reg_max=15 (16 bins): targets are clamped strictly inside [0, 15)
    clamped = bbox2dist(points, boxes, reg_max=15)
    assert clamped.max().item() == pytest.approx(14.99)
    assert bbox2dist(torch.tensor([[100.0, 100.0]]), boxes[:1], reg_max=15).min() == 0
    with pytest.raises(ValueError, match="reg_max"):
        bbox2dist(points, boxes, reg_max=0)
