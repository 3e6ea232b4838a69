"""COCO mask AP/AR (iou_type="segm"): equality with pycocotools' COCOeval on randomised sets."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cvzoo.metrics.coco import (
    CocoFormatError,
    CocoParams,
    coco_eval,
    evaluate_arrays,
    load_ground_truth,
    load_results,
)
from cvzoo.ops.masks import rle_encode

# pycocotools' mask.decode trips NumPy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def blob(rng: np.random.Generator, cx: float, cy: float, radius: float) -> list[float]:
    """A star-shaped (often concave) polygon around (cx, cy)."""
    n = int(rng.integers(4, 14))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.4, 1.0, n)
    return [float(v) for v in np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).ravel()]


def jitter(rng: np.random.Generator, polygon: list[float], scale: float) -> list[float]:
    pts = np.asarray(polygon).reshape(-1, 2)
    pts = pts + rng.normal(0, 0.08 * scale, pts.shape) + rng.normal(0, 0.1 * scale, 2)
    return [float(v) for v in pts.ravel()]


def to_rle(polygons: list[list[float]], h: int, w: int) -> dict:
    rle = coco_mask.merge(coco_mask.frPyObjects(polygons, h, w))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def make_case(seed: int, gt_format: str, n_images: int = 24, n_cats: int = 5) -> tuple[dict, list]:
    """Random masks: polygon / RLE / uncompressed GT, crowd regions, areas unlike the mask areas,
    images without GT or without results, > 100 results in one (image, category), a category
    without results, results for a category not in the GT, rounded (tied) scores."""
    rng = np.random.default_rng(seed)
    cat_ids = [int(c) for c in rng.choice(np.arange(1, 30), n_cats, replace=False)]
    images, anns, results = [], [], []
    ann_id = 1
    for image_id in rng.permutation(np.arange(1, n_images + 1) * 7).tolist():
        h, w = int(rng.integers(24, 90)), int(rng.integers(24, 120))
        images.append({"id": image_id, "height": h, "width": w, "file_name": f"{image_id}.jpg"})
        kind = rng.random()
        gts = []
        for _ in range(0 if kind < 0.1 else int(rng.integers(1, 7))):
            radius = float(rng.choice([3.0, 9.0, 25.0])) * rng.uniform(0.6, 1.4)
            cx, cy = rng.uniform(-5, w + 5), rng.uniform(-5, h + 5)
            polys = [blob(rng, cx, cy, radius)]
            if rng.random() < 0.2:  # a second part
                polys.append(blob(rng, cx + radius, cy, radius / 2))
            crowd = rng.random() < 0.1
            fmt = gt_format if gt_format != "mixed" else str(rng.choice(["polygon", "rle", "uncompressed"]))
            if crowd:
                fmt = "uncompressed"  # COCO's crowd regions are uncompressed RLE
            rle = to_rle(polys, h, w)
            seg = {"polygon": polys, "rle": rle}.get(fmt)
            if fmt == "uncompressed":
                seg = rle_encode(coco_mask.decode(rle), compressed=False)
            area = float(coco_mask.area(rle)) * (rng.uniform(0.6, 1.2) if rng.random() < 0.3 else 1.0)
            ann = {"id": ann_id, "image_id": image_id, "category_id": int(rng.choice(cat_ids[:-1])),
                   "segmentation": seg, "area": area, "iscrowd": int(crowd),
                   "bbox": [float(v) for v in coco_mask.toBbox(rle)]}
            anns.append(ann)
            gts.append((ann, polys, radius))
            ann_id += 1
        if kind < 0.2:
            continue  # no results for this image
        for ann, polys, radius in gts:
            for _ in range(int(rng.integers(0, 4))):
                moved = [jitter(rng, p, radius) for p in polys]
                cat = ann["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
                results.append({"image_id": image_id, "category_id": cat, "segmentation": to_rle(moved, h, w),
                                "score": float(np.round(rng.random(), 1))})
        n_fp = int(rng.integers(0, 8)) if rng.random() > 0.08 else 120
        fp_cat = int(rng.choice(cat_ids[:-1]))
        for _ in range(n_fp):
            poly = blob(rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 20))
            cat = fp_cat if n_fp > 100 else int(rng.choice([*cat_ids[:-1], 99]))
            results.append({"image_id": image_id, "category_id": cat, "segmentation": to_rle([poly], h, w),
                            "score": float(np.round(rng.random(), 2))})
    rng.shuffle(results)
    categories = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    return {"images": images, "annotations": anns, "categories": categories}, results


def reference(gt: dict, results: list) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def ours(gt: dict, results: list):
    arrays, image_ids, cat_ids = load_ground_truth(gt, iou_type="segm")
    sizes = np.array([[img["height"], img["width"]] for img in sorted(gt["images"], key=lambda i: i["id"])])
    dets = load_results(results, image_ids, cat_ids, iou_type="segm", image_sizes=sizes)
    return evaluate_arrays(arrays, dets, cat_ids.size, CocoParams(iou_type="segm"))


@pytest.mark.parametrize("gt_format,seed", [("polygon", 0), ("polygon", 1), ("rle", 2), ("rle", 3),
                                            ("uncompressed", 4), ("mixed", 5), ("mixed", 6)])
def test_equals_pycocotools_randomized(gt_format, seed):
    gt, results = make_case(seed, gt_format)
    ref = reference(gt, results)
    stats = coco_eval(gt, results, iou_type="segm")
    assert list(stats) == KEYS
    np.testing.assert_allclose([stats[k] for k in KEYS], ref.stats, rtol=0, atol=1e-6)
    evaluation = ours(gt, results)
    np.testing.assert_array_equal(evaluation.precision, ref.eval["precision"])
    np.testing.assert_array_equal(evaluation.recall, ref.eval["recall"])
    assert (ref.stats > 0).sum() >= 8  # the sets are not degenerate


def test_box_results_use_box_areas_like_load_res():
    # loadRes reads all results as box results when the first one has a bbox: the area ranges then
    # use w * h of the boxes, and a result without segmentation is scored with its box as polygon.
    gt, results = make_case(11, "mixed")
    rng = np.random.default_rng(0)
    for r in results:
        box = [float(v) for v in coco_mask.toBbox(r["segmentation"])]
        r["bbox"] = [box[0] - 1, box[1] - 1, box[2] * rng.uniform(1, 3), box[3] * rng.uniform(1, 3)]
    for r in results[::7]:
        del r["segmentation"]
    ref = reference(gt, results)
    stats = coco_eval(gt, results, iou_type="segm")
    np.testing.assert_allclose([stats[k] for k in KEYS], ref.stats, rtol=0, atol=1e-6)
    no_box = [{k: v for k, v in r.items() if k != "bbox"} for r in results if "segmentation" in r]
    mask_areas = coco_eval(gt, no_box, iou_type="segm")
    np.testing.assert_allclose([mask_areas[k] for k in KEYS], reference(gt, no_box).stats, rtol=0, atol=1e-6)
    assert mask_areas["APs"] != pytest.approx(stats["APs"])


def test_bytes_counts_per_class_and_bbox_untouched():
    gt, results = make_case(21, "polygon", n_images=12)
    as_bytes = [dict(r, segmentation={"size": r["segmentation"]["size"],
                                      "counts": r["segmentation"]["counts"].encode()}) for r in results]
    a = coco_eval(gt, results, iou_type="segm", per_class=True)
    b = coco_eval(gt, as_bytes, iou_type="segm", per_class=True)
    assert a == b
    assert set(a["per_class"]) == {c["id"] for c in gt["categories"]}
    # the GT of these sets also has boxes: box evaluation of the same files is still the box one
    boxes = [dict(r, bbox=[float(v) for v in coco_mask.toBbox(r["segmentation"])]) for r in results]
    assert coco_eval(gt, boxes)["AP"] != a["AP"]


def test_errors_name_the_result_or_annotation():
    gt, results = make_case(31, "rle", n_images=8)
    bad = copy.deepcopy(results)
    bad[3]["segmentation"]["counts"] = bad[3]["segmentation"]["counts"][:-1] + "~"
    with pytest.raises(CocoFormatError, match=r"results\[3\]: RLE counts string has an invalid character '~'"):
        coco_eval(gt, bad, iou_type="segm")
    bad = copy.deepcopy(results)
    bad[5]["segmentation"]["counts"] = bad[5]["segmentation"]["counts"] + "1"
    with pytest.raises(CocoFormatError, match=r"results\[5\]: RLE runs add up to"):
        coco_eval(gt, bad, iou_type="segm")
    bad = copy.deepcopy(results)
    h, w = bad[2]["segmentation"]["size"]
    bad[2]["segmentation"] = rle_encode(np.ones((h + 1, w), dtype=bool))
    with pytest.raises(CocoFormatError, match=rf"results\[2\]: segmentation size \[{h + 1}, {w}\] differs from its "
                                              rf"image's \[{h}, {w}\]"):
        coco_eval(gt, bad, iou_type="segm")
    del bad[2]["segmentation"]
    with pytest.raises(CocoFormatError, match=r"results\[2\] has no 'segmentation'"):
        coco_eval(gt, bad, iou_type="segm")
    bad_gt = copy.deepcopy(gt)
    ann = bad_gt["annotations"][4]
    ann["segmentation"] = {"size": ann["segmentation"]["size"], "counts": "0:0"}
    with pytest.raises(CocoFormatError, match=rf"ground truth: annotation id {ann['id']}: RLE runs add up to"):
        coco_eval(bad_gt, results, iou_type="segm")
    ann["segmentation"] = [[0, 0, 5, 5, float("nan"), 3]]
    with pytest.raises(CocoFormatError, match=rf"annotation id {ann['id']}: polygon coordinate nan"):
        coco_eval(bad_gt, results, iou_type="segm")
    ann["segmentation"] = gt["annotations"][4]["segmentation"]
    image = next(i for i in bad_gt["images"] if i["id"] == ann["image_id"])
    del image["height"]
    ann["segmentation"] = [[0, 0, 5, 0, 5, 5]]
    with pytest.raises(CocoFormatError, match=rf"annotation id {ann['id']}: polygons need the image height"):
        coco_eval(bad_gt, results, iou_type="segm")
