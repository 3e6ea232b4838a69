"""COCO RLE ops: bit-for-bit equality with pycocotools.mask on randomised masks and polygons."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask

from cvzoo.ops.masks import (
    MaskFormatError,
    RleBatch,
    annotation_to_rle,
    polygons_to_rle,
    rle_area,
    rle_decode,
    rle_encode,
    rle_iou,
    rle_merge,
    rle_to_bbox,
)


def reference_encode(masks: np.ndarray) -> list[dict]:
    """pycocotools' RLEs of a ``[N, H, W]`` stack, counts as str."""
    out = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": r["size"], "counts": r["counts"].decode()} for r in out]


def as_str(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.decode() if isinstance(counts, bytes) else counts}


def blob_masks(rng: np.random.Generator, n: int, h: int, w: int) -> np.ndarray:
    """Random ellipses and rectangles, some overlapping the border."""
    yy, xx = np.mgrid[:h, :w]
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx = rng.uniform(-0.2, 1.2) * h, rng.uniform(-0.2, 1.2) * w
            ry, rx = rng.uniform(0.5, 0.6 * h + 1), rng.uniform(0.5, 0.6 * w + 1)
            if rng.random() < 0.5:
                masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                masks[i] |= (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
    return masks


def special_masks(h: int, w: int) -> np.ndarray:
    """Empty, full, single pixels at the corners, one column, one row, a checkerboard."""
    out = np.zeros((9, h, w), dtype=bool)
    out[1] = True
    out[2, 0, 0] = True
    out[3, -1, -1] = True
    out[4, 0, -1] = True
    out[5, :, w // 2] = True
    out[6, h // 2, :] = True
    out[7] = (np.add.outer(np.arange(h), np.arange(w)) % 2) == 0
    out[8, -1, 0] = True
    return out


SIZES = [(1, 1), (1, 17), (23, 1), (2, 3), (31, 17), (48, 64), (97, 5)]


@pytest.mark.parametrize("h,w", SIZES)
def test_encode_decode_bit_for_bit(h, w):
    rng = np.random.default_rng(h * 1000 + w)
    masks = np.concatenate([special_masks(h, w), blob_masks(rng, 12, h, w), rng.random((4, h, w)) < 0.3])
    ref = reference_encode(masks)
    ours = rle_encode(masks)
    assert ours == ref
    assert all(isinstance(r["counts"], str) for r in ours)
    np.testing.assert_array_equal(rle_decode(ref), masks.astype(np.uint8))
    np.testing.assert_array_equal(rle_decode(ours[3]), masks[3].astype(np.uint8))
    assert rle_encode(masks[5]) == ref[5]  # a single [H, W] mask gives one dict
    # uncompressed RLE: what pycocotools' frPyObjects turns into the same compressed string
    plain = rle_encode(masks, compressed=False)
    assert [as_str(coco_mask.frPyObjects(r, h, w)) for r in plain] == ref
    assert all(sum(r["counts"]) == h * w for r in plain)


def test_encode_accepts_torch_uint8_and_any_nonzero():
    rng = np.random.default_rng(1)
    masks = blob_masks(rng, 5, 40, 30)
    ref = reference_encode(masks)
    assert rle_encode(torch.from_numpy(masks)) == ref
    assert rle_encode(masks.astype(np.uint8) * 255) == ref
    assert rle_encode(torch.from_numpy(masks).float()) == ref
    with pytest.raises(MaskFormatError, match=r"\[H, W\] or \[N, H, W\]"):
        rle_encode(np.zeros(5))


def test_large_counts_and_negative_differences_roundtrip():
    # Long runs need several characters and the differences to the run two back are negative.
    h, w = 700, 900
    mask = np.zeros((3, h, w), dtype=bool)
    mask[0, :, 100:800] = True
    mask[1, 5:690, 3:4] = True
    mask[1, 10:20, 600:890] = True
    mask[2, 0, 0] = True
    mask[2, -1, -1] = True
    ref = reference_encode(mask)
    assert rle_encode(mask) == ref
    np.testing.assert_array_equal(rle_decode(ref), mask.astype(np.uint8))
    batch = RleBatch.from_rles(ref)
    assert batch.to_rles() == ref


@pytest.mark.parametrize("seed", range(4))
def test_area_bbox_merge_iou_equal(seed):
    rng = np.random.default_rng(seed)
    h, w = [(37, 53), (1, 40), (40, 1), (64, 48)][seed]
    masks = np.concatenate([blob_masks(rng, 14, h, w), special_masks(h, w)])
    rles = reference_encode(masks)
    raw = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    np.testing.assert_array_equal(rle_area(rles), coco_mask.area(raw))
    assert rle_area(rles[0]) == int(coco_mask.area(raw[0]))
    np.testing.assert_array_equal(rle_to_bbox(rles), coco_mask.toBbox(raw))
    np.testing.assert_array_equal(rle_to_bbox(rles[1]), coco_mask.toBbox(raw[1]))
    for _ in range(6):
        pick = rng.choice(len(rles), int(rng.integers(1, 5)), replace=False)
        for intersect in (False, True):
            assert rle_merge([rles[i] for i in pick], intersect) == as_str(
                coco_mask.merge([raw[i] for i in pick], int(intersect)))
    crowd = rng.random(len(rles)) < 0.3
    ref_iou = coco_mask.iou(raw[:10], raw, crowd.astype(np.uint8).tolist())
    np.testing.assert_allclose(rle_iou(rles[:10], rles, crowd), ref_iou, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(rle_iou(rles[:10], rles, crowd), ref_iou)


def test_non_canonical_uncompressed_rles_match_the_reference():
    # Zero-length runs in the middle are legal in an uncompressed RLE; pycocotools keeps their
    # traces in merge and toBbox, and so must we.
    cases = [[3, 0, 2, 20], [0, 5, 0, 0, 20], [25], [0, 25], [25, 0], [10, 0, 0, 3, 12], [12, 0, 0, 0, 13], [4, 4, 4, 4, 4, 5]]
    rles = [{"size": [5, 5], "counts": c} for c in cases]
    compressed = [as_str(coco_mask.frPyObjects(r, 5, 5)) for r in rles]
    assert [annotation_to_rle(r, 5, 5) for r in rles] == compressed
    raw = [coco_mask.frPyObjects(r, 5, 5) for r in rles]
    np.testing.assert_array_equal(rle_to_bbox(rles), coco_mask.toBbox(raw))
    np.testing.assert_array_equal(rle_area(compressed), coco_mask.area(raw))
    for i in range(len(rles)):
        for j in range(len(rles)):
            for intersect in (0, 1):
                assert rle_merge([rles[i], compressed[j]], bool(intersect)) == as_str(
                    coco_mask.merge([raw[i], raw[j]], intersect)), (cases[i], cases[j], intersect)
    assert rle_merge(rles[:4]) == as_str(coco_mask.merge(raw[:4]))
    # Where both masks have a zero-length run at one place the reference's walk stops early
    # ([0, 0, 0, 25] with itself: IoU 0); the IoU on runs falls back to that walk for such pairs.
    crowd = [i % 2 == 0 for i in range(len(rles))]
    np.testing.assert_array_equal(rle_iou(rles, rles, crowd), coco_mask.iou(raw, raw, crowd))
    twice = {"size": [5, 5], "counts": [0, 0, 0, 25]}
    assert rle_iou([twice], [twice], [False])[0, 0] == 0.0 == coco_mask.iou(
        [coco_mask.frPyObjects(twice, 5, 5)], [coco_mask.frPyObjects(twice, 5, 5)], [0])[0, 0]


def test_iou_crowd_sizes_and_empty():
    a = rle_encode(np.pad(np.ones((4, 4), bool), ((0, 6), (0, 6))))
    b = rle_encode(np.pad(np.ones((2, 8), bool), ((1, 7), (1, 1))))
    other_size = rle_encode(np.ones((10, 11), bool))
    raw = [a, b, other_size]  # pycocotools reads str counts as well
    ours = rle_iou([a, b], [a, b, other_size], [False, True, False])
    np.testing.assert_array_equal(ours, coco_mask.iou(raw[:2], raw, [0, 1, 0]))
    assert ours[0, 1] == pytest.approx(6 / 16)  # crowd: intersection over the detection's area
    assert ours[0, 2] == -1.0  # different sizes with overlapping boxes: the reference's -1
    assert rle_iou([], [a], [False]).shape == (0, 1)
    assert rle_iou([a], [], []).shape == (1, 0)
    with pytest.raises(ValueError, match="iscrowd has 1 entries for 2"):
        rle_iou([a], [a, b], [False])


def random_polygon(rng: np.random.Generator, h: int, w: int) -> list[float]:
    kind = rng.integers(0, 6)
    cx, cy = rng.uniform(-0.2, 1.2) * w, rng.uniform(-0.2, 1.2) * h
    if kind == 0:  # tiny, below a pixel
        n, radius = int(rng.integers(3, 6)), rng.uniform(0.05, 1.2)
    elif kind == 1:  # concave star
        n, radius = int(rng.integers(6, 24)), rng.uniform(2, 0.6 * max(h, w))
    elif kind == 2:  # far outside the image on some side
        n, radius = int(rng.integers(3, 9)), rng.uniform(5, 2 * max(h, w))
    else:
        n, radius = int(rng.integers(3, 12)), rng.uniform(1, 0.5 * max(h, w))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * (rng.uniform(0.3, 1.0, n) if kind == 1 else rng.uniform(0.7, 1.0, n))
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    if rng.random() < 0.3:  # grid-aligned coordinates hit the rasteriser's rounding ties
        pts = np.round(pts * 2) / 2
    if rng.random() < 0.2:  # repeated vertices: zero-length edges
        pts = np.repeat(pts, rng.integers(1, 3, n), axis=0)
    if rng.random() < 0.1:  # collinear: zero area
        pts[:, 1] = pts[0, 1]
    if rng.random() < 0.2:
        rng.shuffle(pts)  # self-intersecting
    return [float(v) for v in pts.ravel()]


@pytest.mark.parametrize("seed", range(6))
def test_polygons_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    h, w = int(rng.integers(1, 90)), int(rng.integers(1, 120))
    for _ in range(30):
        polys = [random_polygon(rng, h, w) for _ in range(int(rng.integers(1, 4)))]
        if rng.random() < 0.3:  # after the first, polygons of 1 or 2 points and an odd trailing value
            polys.append([float(v) for v in rng.uniform(-2, w + 2, int(rng.integers(0, 6)))])
        ref = as_str(coco_mask.merge(coco_mask.frPyObjects(polys, h, w)))
        assert polygons_to_rle(polys, h, w) == ref, polys
        assert annotation_to_rle(polys, h, w) == ref


def test_polygon_batch_equals_one_by_one_and_boxes():
    rng = np.random.default_rng(7)
    segs, heights, widths = [], [], []
    for _ in range(60):
        h, w = int(rng.integers(5, 70)), int(rng.integers(5, 70))
        segs.append([random_polygon(rng, h, w) for _ in range(int(rng.integers(0, 4)))])
        heights.append(h)
        widths.append(w)
    batch = RleBatch.from_segmentations(segs, heights, widths)
    expected = [as_str(coco_mask.merge(coco_mask.frPyObjects(s, h, w))) if s else
                {"size": [h, w], "counts": rle_encode(np.zeros((h, w), bool))["counts"]}
                for s, h, w in zip(segs, heights, widths)]
    assert batch.to_rles() == expected
    # frPyObjects rasterises a box as its four corners
    box = [3.3, 4.6, 10.2, 7.9]
    x, y, bw, bh = box
    ref = as_str(coco_mask.frPyObjects(np.array([box]), 30, 30)[0])
    assert polygons_to_rle([[x, y, x, y + bh, x + bw, y + bh, x + bw, y]], 30, 30) == ref


def test_annotation_to_rle_all_formats():
    rng = np.random.default_rng(3)
    mask = blob_masks(rng, 1, 20, 30)[0]
    compressed = rle_encode(mask)
    plain = rle_encode(mask, compressed=False)
    assert annotation_to_rle(compressed, 20, 30) == compressed
    assert annotation_to_rle({"size": [20, 30], "counts": compressed["counts"].encode()}, 20, 30) == compressed
    assert annotation_to_rle(plain, 20, 30) == compressed
    assert annotation_to_rle([], 20, 30) == rle_encode(np.zeros((20, 30), bool))


def test_corrupt_rles_raise_with_reason():
    good = rle_encode(np.eye(6, dtype=bool))
    with pytest.raises(MaskFormatError, match="invalid character '!' at position 2"):
        rle_decode({"size": [6, 6], "counts": good["counts"][:2] + "!" + good["counts"][3:]})
    with pytest.raises(MaskFormatError, match="add up to 35 pixels, but size 6x6 has 36"):
        rle_area({"size": [6, 6], "counts": [0, 1, 6, 1, 6, 1, 6, 1, 6, 1, 6]})
    with pytest.raises(MaskFormatError, match="add up to"):
        rle_to_bbox({"size": [7, 6], "counts": good["counts"]})
    with pytest.raises(MaskFormatError, match="middle of a number"):
        rle_area({"size": [6, 6], "counts": good["counts"] + "P"})  # 'P' has the continuation bit
    with pytest.raises(MaskFormatError, match="invalid run length -1"):
        rle_area({"size": [6, 6], "counts": "O"})  # a single group with the sign bit: -1
    with pytest.raises(MaskFormatError, match="non-ASCII"):
        rle_area({"size": [6, 6], "counts": "0é"})
    with pytest.raises(MaskFormatError, match="non-negative integers"):
        rle_area({"size": [6, 6], "counts": [10, -1, 27]})
    with pytest.raises(MaskFormatError, match="'size' must be"):
        rle_area({"size": [6], "counts": good["counts"]})
    with pytest.raises(MaskFormatError, match="'size' and 'counts'"):
        rle_area([good, {"counts": "0"}])
    with pytest.raises(MaskFormatError, match="one size"):
        rle_merge([good, rle_encode(np.eye(5, dtype=bool))])
    with pytest.raises(MaskFormatError, match="one size"):
        rle_decode([good, rle_encode(np.eye(5, dtype=bool))])
    with pytest.raises(MaskFormatError, match="not finite"):
        polygons_to_rle([[0, 0, 5, float("nan"), 5, 5]], 10, 10)
    with pytest.raises(MaskFormatError, match="flat list"):
        polygons_to_rle([[[0, 0], [5, 0], [5, 5]]], 10, 10)
    assert issubclass(MaskFormatError, ValueError)


def test_batch_errors_name_the_item():
    good = rle_encode(np.eye(4, dtype=bool))
    with pytest.raises(MaskFormatError) as info:
        RleBatch.from_rles([good, good, {"size": [4, 4], "counts": "zz"}])
    assert info.value.index == 2
    with pytest.raises(MaskFormatError) as info:
        RleBatch.from_segmentations([[[0, 0, 3, 0, 3, 3]], good, [[1, 1, 2, float("inf"), 3, 3]]], [4, 4, 4], [4, 4, 4])
    assert info.value.index == 2
    with pytest.raises(MaskFormatError) as info:
        RleBatch.from_segmentations([good, {"size": [4, 4], "counts": [1, 2]}], [4, 4], [4, 4])
    assert info.value.index == 1
    with pytest.raises(MaskFormatError, match="polygons or an RLE") as info:
        RleBatch.from_segmentations([good, 5], [4, 4], [4, 4])
    assert info.value.index == 1
