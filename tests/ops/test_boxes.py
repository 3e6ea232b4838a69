import math

import pytest
import torch
import torchvision.ops as tvops

from cvzoo.ops import (
    ShapeError,
    box_area,
    box_convert,
    box_iou,
    box_iou_elementwise,
    clip_boxes,
    complete_box_iou,
    complete_box_iou_elementwise,
    distance_box_iou,
    distance_box_iou_elementwise,
    generalized_box_iou,
    generalized_box_iou_elementwise,
    remove_small_boxes,
    valid_boxes_mask,
)
from tests.ops.helpers import random_boxes


def test_box_convert_hand_made():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0]])
    assert box_convert(xyxy, "xyxy", "xywh").tolist() == [[10, 20, 20, 40]]
    assert box_convert(xyxy, "xyxy", "cxcywh").tolist() == [[20, 40, 20, 40]]
    assert box_convert(torch.tensor([[20.0, 40, 20, 40]]), "cxcywh", "xyxy").tolist() == xyxy.tolist()


@pytest.mark.parametrize("in_fmt", ["xyxy", "xywh", "cxcywh"])
@pytest.mark.parametrize("out_fmt", ["xyxy", "xywh", "cxcywh"])
def test_box_convert_matches_torchvision_and_round_trips(in_fmt, out_fmt):
    boxes = random_boxes(12, seed=0).reshape(3, 4, 4)  # leading dims are kept
    ours = box_convert(boxes, in_fmt, out_fmt)
    ref = tvops.box_convert(boxes.reshape(-1, 4), in_fmt, out_fmt).reshape(3, 4, 4)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(box_convert(ours, out_fmt, in_fmt), boxes)


def test_box_convert_bad_input():
    with pytest.raises(ShapeError, match=r"\[\.\.\., 4\]"):
        box_convert(torch.zeros(3, 5), "xyxy", "xywh")
    with pytest.raises(ValueError, match="in_fmt"):
        box_convert(torch.zeros(3, 4), "xxyy", "xywh")


def test_area_clip_and_filters():
    boxes = torch.tensor([[0.0, 0, 10, 5], [5, 5, 5, 9], [3, 3, 1, 8], [-5, -5, 200, 50]])
    assert box_area(boxes).tolist() == [50, 0, 0, 205 * 55]
    clipped = clip_boxes(boxes, (40, 100))
    assert clipped[3].tolist() == [0, 0, 100, 40]
    assert valid_boxes_mask(boxes).tolist() == [True, False, False, True]
    assert remove_small_boxes(boxes, 6.0).tolist() == [3]
    torch.testing.assert_close(remove_small_boxes(boxes, 1.0), tvops.remove_small_boxes(boxes, 1.0))
    with pytest.raises(ShapeError, match="height, width"):
        clip_boxes(boxes, (1, 2, 3))


def test_iou_hand_made():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [4, 0, 6, 2]])
    # overlap 1, union 7; enclosing box of the first pair 3x3=9 -> GIoU = 1/7 - 2/9
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 7, 0.0]]))
    torch.testing.assert_close(generalized_box_iou(a, b)[0, 0], torch.tensor(1 / 7 - 2 / 9))
    # Second pair: disjoint, enclosing 6x2 = 12, union 8 -> GIoU = -4/12
    torch.testing.assert_close(generalized_box_iou(a, b)[0, 1], torch.tensor(-1 / 3))
    # DIoU of the first pair: centres (1,1) and (2,2) -> rho^2 = 2, c^2 = 18
    torch.testing.assert_close(distance_box_iou(a, b, eps=0.0)[0, 0], torch.tensor(1 / 7 - 2 / 18))


@pytest.mark.parametrize(
    ("ours", "ref"),
    [
        (box_iou, tvops.box_iou),
        (generalized_box_iou, tvops.generalized_box_iou),
        (distance_box_iou, tvops.distance_box_iou),
        (complete_box_iou, tvops.complete_box_iou),
    ],
)
def test_pairwise_matches_torchvision(ours, ref):
    a, b = random_boxes(7, seed=1), random_boxes(5, seed=2)
    out = ours(a, b)
    assert out.shape == (7, 5)
    torch.testing.assert_close(out, ref(a, b), rtol=1e-5, atol=1e-6)
    # float16 inputs are computed in float32 instead of overflowing
    big = random_boxes(4, seed=3, size=2000.0)
    assert torch.isfinite(ours(big.half(), big.half())).all()


@pytest.mark.parametrize(
    ("elementwise", "pairwise"),
    [
        (box_iou_elementwise, box_iou),
        (generalized_box_iou_elementwise, generalized_box_iou),
        (distance_box_iou_elementwise, distance_box_iou),
        (complete_box_iou_elementwise, complete_box_iou),
    ],
)
def test_elementwise_is_the_diagonal_and_broadcasts(elementwise, pairwise):
    a, b = random_boxes(6, seed=4, dtype=torch.float64), random_boxes(6, seed=5, dtype=torch.float64)
    out = elementwise(a.reshape(2, 3, 4), b.reshape(2, 3, 4), eps=0.0)
    torch.testing.assert_close(out.reshape(-1), torch.diagonal(pairwise(a, b)))
    assert elementwise(a[:, None], b[None]).shape == (6, 6)
    with pytest.raises(ShapeError, match="broadcast"):
        elementwise(a[:4], b[:3])


def test_identical_and_empty_boxes():
    a = random_boxes(3, seed=6)
    torch.testing.assert_close(torch.diagonal(box_iou(a, a)), torch.ones(3))
    torch.testing.assert_close(complete_box_iou_elementwise(a, a), torch.ones(3), atol=1e-5, rtol=0)
    empty = torch.zeros(1, 4)
    assert box_iou(empty, empty).item() == 0.0  # 0/0 is defined as 0, not NaN
    assert box_iou(torch.zeros(0, 4), a).shape == (0, 3)


def test_ciou_gradient_matches_torchvision():
    a = random_boxes(4, seed=7, dtype=torch.float64).requires_grad_()
    b = random_boxes(4, seed=8, dtype=torch.float64)
    complete_box_iou_elementwise(a, b).sum().backward()
    ours = a.grad.clone()
    a.grad = None
    (1 - tvops.complete_box_iou_loss(a, b)).sum().backward()
    torch.testing.assert_close(ours, a.grad)
    assert not math.isnan(ours.sum().item())
