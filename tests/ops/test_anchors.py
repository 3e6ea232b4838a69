import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList

from cvzoo.ops import AnchorGenerator, ShapeError, make_grid_points, ssd_default_boxes, ssd_scales


def _torchvision_anchors(generator, image_size, feature_sizes):
    images = ImageList(torch.zeros(2, 3, *image_size), [image_size, image_size])
    features = [torch.zeros(2, 8, h, w) for h, w in feature_sizes]
    return generator(images, features)


@pytest.mark.parametrize(
    ("sizes", "ratios", "image_size", "feature_sizes"),
    [
        (((32,), (64,), (128,)), ((0.5, 1.0, 2.0),) * 3, (64, 96), [(8, 12), (4, 6), (2, 3)]),
        (((32, 40, 50), (64, 80, 101)), ((0.5, 1.0, 2.0), (1.0, 3.0)), (70, 50), [(9, 7), (5, 4)]),
    ],
)
def test_anchor_generator_matches_torchvision(sizes, ratios, image_size, feature_sizes):
    ours = AnchorGenerator(sizes, ratios)
    ref = _torchvision_anchors(TVAnchorGenerator(sizes, ratios), image_size, feature_sizes)
    out = ours(image_size, feature_sizes)
    assert out.shape == ref[0].shape
    torch.testing.assert_close(out, ref[0])
    assert ours.num_anchors_per_location() == TVAnchorGenerator(sizes, ratios).num_anchors_per_location()


def test_anchor_generator_hand_made():
    generator = AnchorGenerator(((16,),), ((1.0, 4.0),))
    anchors = generator.grid_anchors([(1, 2)], [(8, 8)])
    # ratio 4 = h/w: w = 16/2, h = 16*2; second cell shifted by the stride
    assert anchors.tolist() == [[-8, -8, 8, 8], [-4, -16, 4, 16], [0, -8, 16, 8], [4, -16, 12, 16]]
    with pytest.raises(ValueError, match="levels"):
        AnchorGenerator(((16,), (32,)), ((1.0,),))
    with pytest.raises(ShapeError, match="built for 1 levels"):
        generator.grid_anchors([(1, 2), (1, 1)], [(8, 8), (16, 16)])


def test_ssd_scales_formula():
    scales = ssd_scales(6, 0.2, 0.9)
    expected = [0.2 + 0.7 * (k - 1) / 5 for k in range(1, 7)] + [1.0]
    assert scales == pytest.approx(expected)


def test_ssd_default_boxes_hand_made():
    boxes = ssd_default_boxes([(2, 2), (1, 1)], 0.2, 0.9, aspect_ratios=[(2.0,), ()])
    assert boxes.shape == (2 * 2 * 4 + 1 * 2, 4)
    first = boxes[:4]
    s1, s2 = 0.2, 0.9
    expected = [
        [0.25, 0.25, s1, s1],
        [0.25, 0.25, math.sqrt(s1 * s2), math.sqrt(s1 * s2)],
        [0.25, 0.25, s1 * math.sqrt(2), s1 / math.sqrt(2)],
        [0.25, 0.25, s1 / math.sqrt(2), s1 * math.sqrt(2)],
    ]
    torch.testing.assert_close(first, torch.tensor(expected))
    torch.testing.assert_close(boxes[4, :2], torch.tensor([0.75, 0.25]))  # next cell, row-major
    root = math.sqrt(0.9 * 1.0)  # last level: the extra box uses s_{m+1} = 1
    torch.testing.assert_close(boxes[-1], torch.tensor([0.5, 0.5, root, root]))
    clipped = ssd_default_boxes([(1, 1)], aspect_ratios=[(2.0,)], scales=[1.2, 1.5])
    assert clipped[:, 2:].max() == 1.0
    unclipped = ssd_default_boxes([(1, 1)], aspect_ratios=[(2.0,)], scales=[1.2, 1.5], clip=False)
    assert unclipped[0, 2:].tolist() == pytest.approx([1.2, 1.2])


def _tv_default_boxes(generator, image_size, feature_sizes):
    boxes = _torchvision_anchors(generator, image_size, feature_sizes)[0]
    scale = torch.tensor([image_size[1], image_size[0]] * 2, dtype=torch.float32)
    return boxes / scale  # back to normalised xyxy


def _xyxy(boxes):
    return torch.cat((boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2), dim=1)


def test_ssd_default_boxes_match_torchvision():
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    feature_sizes = [(10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1)]
    ref = _tv_default_boxes(
        DefaultBoxGenerator(ratios, min_ratio=0.2, max_ratio=0.9), (300, 300), feature_sizes
    )
    ours = ssd_default_boxes(feature_sizes, 0.2, 0.9, ratios)
    torch.testing.assert_close(_xyxy(ours), ref)


def test_ssd300_steps_and_scales_match_torchvision():
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    scales = [0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05]
    steps = [8, 16, 32, 64, 100, 300]
    feature_sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    generator = DefaultBoxGenerator(ratios, scales=scales, steps=steps)
    ref = _tv_default_boxes(generator, (300, 300), feature_sizes)
    ours = ssd_default_boxes(
        feature_sizes, aspect_ratios=ratios, scales=scales, steps=steps, image_size=(300, 300)
    )
    assert ours.shape[0] == 8732  # the famous SSD300 box count
    torch.testing.assert_close(_xyxy(ours), ref)
    with pytest.raises(ShapeError, match="image_size"):
        ssd_default_boxes(feature_sizes, aspect_ratios=ratios, steps=steps)


def test_make_grid_points():
    points, strides = make_grid_points([(2, 3), (1, 1)], [8, 16])
    assert points.tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12], [8, 8]]
    assert strides.tolist() == [8] * 6 + [16]
    points0, _ = make_grid_points([(1, 2)], [4], offset=0.0)
    assert points0.tolist() == [[0, 0], [4, 0]]
    with pytest.raises(ShapeError, match="strides"):
        make_grid_points([(2, 3)], [8, 16])
    with pytest.raises(ShapeError, match=r"feature_sizes\[0\]"):
        make_grid_points([(0, 3)], [8])
