"""COCO box AP/AR: equality with pycocotools on randomized datasets with every corner case."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
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

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def make_case(seed: int, n_images: int = 30, n_cats: int = 6, first_ann_id: int = 1) -> tuple[dict, list]:
    """Random COCO set: crowd regions, 'ignore' flags, areas unlike box areas, empty images,
    images without predictions, a category without GT, results for a category not in the GT,
    > 100 detections in one (image, category), duplicate GT boxes and rounded (tied) scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": int(i)} for i in rng.permutation(np.arange(1, n_images + 1) * 3)]
    cat_ids = [int(c) for c in rng.choice(np.arange(1, 20), n_cats, replace=False)]
    categories = [{"id": c, "name": f"c{c}"} for c in cat_ids]
    anns, results, ann_id = [], [], first_ann_id
    for img in images:
        kind = rng.random()
        gts = []
        for _ in range(0 if kind < 0.1 else int(rng.integers(1, 9))):
            scale = rng.choice([12.0, 50.0, 150.0])
            w, h = rng.uniform(0.3, 1.5, 2) * scale
            x, y = rng.uniform(0, 400, 2)
            if rng.random() < 0.3:  # integer boxes: IoUs that land exactly on thresholds
                x, y, w, h = (float(np.round(v)) for v in (x, y, w, h))
            ann = {"id": ann_id, "image_id": img["id"], "category_id": int(rng.choice(cat_ids[:-1])),
                   "bbox": [x, y, w, h], "iscrowd": int(rng.random() < 0.1),
                   "area": w * h * (rng.uniform(0.5, 1.0) if rng.random() < 0.5 else 1.0)}
            if rng.random() < 0.2:
                ann["ignore"] = int(rng.random() < 0.5)
            anns.append(ann)
            gts.append(ann)
            ann_id += 1
            if rng.random() < 0.1:
                anns.append(dict(ann, id=ann_id, bbox=list(ann["bbox"])))
                ann_id += 1
        if kind < 0.2:
            continue
        for g in gts:
            for _ in range(int(rng.integers(0, 4))):
                x, y, w, h = g["bbox"]
                j = rng.normal(0, 0.12, 4) * [w, h, w, h]
                box = [x + j[0], y + j[1], max(w + j[2], 1.0), max(h + j[3], 1.0)]
                if rng.random() < 0.2:
                    box = [float(np.round(v)) for v in box]
                cat = g["category_id"] if rng.random() < 0.85 else int(rng.choice(cat_ids))
                results.append({"image_id": img["id"], "category_id": cat, "bbox": box,
                                "score": float(np.round(rng.random(), 1))})
        n_fp = int(rng.integers(0, 10)) if rng.random() > 0.05 else 130
        fp_cat = int(rng.choice(cat_ids))
        for _ in range(n_fp):
            w, h = rng.uniform(5, 200, 2)
            x, y = rng.uniform(0, 400, 2)
            cat = fp_cat if n_fp > 100 else int(rng.choice([*cat_ids, 99]))
            results.append({"image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                            "score": float(np.round(rng.random(), 2))})
    rng.shuffle(results)
    return {"images": images, "annotations": anns, "categories": categories}, results


def reference(gt: dict, results: list, max_dets=(1, 10, 100)) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def ours(gt, results, max_dets=(1, 10, 100)):
    arrays, image_ids, cat_ids = load_ground_truth(gt)
    dets = load_results(results, image_ids, cat_ids)
    return evaluate_arrays(arrays, dets, cat_ids.size, CocoParams(max_dets=np.array(max_dets)))


@pytest.mark.parametrize("seed", range(24))
def test_equals_pycocotools_randomized(seed):
    n_images = 20 + seed  # 20..43 images
    gt, results = make_case(seed, n_images=n_images)
    ref = reference(gt, results)
    stats = coco_eval(gt, results)
    assert list(stats) == KEYS
    np.testing.assert_allclose([stats[k] for k in KEYS], ref.stats, rtol=0, atol=1e-9)
    evaluation = ours(gt, results)
    np.testing.assert_array_equal(evaluation.precision, ref.eval["precision"])
    np.testing.assert_array_equal(evaluation.recall, ref.eval["recall"])


@pytest.mark.parametrize("seed", range(3))
def test_custom_max_dets_and_per_class(seed):
    gt, results = make_case(100 + seed, n_images=25)
    ref = reference(gt, results, max_dets=(1, 3, 20))
    evaluation = ours(gt, results, max_dets=(1, 3, 20))
    np.testing.assert_array_equal(evaluation.precision, ref.eval["precision"])
    np.testing.assert_array_equal(evaluation.recall, ref.eval["recall"])
    per_class = coco_eval(gt, results, per_class=True)["per_class"]
    prec = reference(gt, results).eval["precision"][:, :, :, 0, -1]
    for k, cat_id in enumerate(sorted(c["id"] for c in gt["categories"])):
        p = prec[:, :, k]
        expected = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
        assert per_class[cat_id] == pytest.approx(expected, abs=1e-12)
    assert per_class[gt["categories"][-1]["id"]] == -1.0  # the category without ground truth


def test_annotation_id_zero_quirk_matches_pycocotools():
    gt, results = make_case(7, n_images=20, first_ann_id=0)
    ref = reference(gt, results)
    stats = coco_eval(gt, results)
    np.testing.assert_allclose([stats[k] for k in KEYS], ref.stats, atol=1e-9)


def test_json_paths(tmp_path):
    gt, results = make_case(3, n_images=20)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    from_files = coco_eval(tmp_path / "gt.json", str(tmp_path / "res.json"))
    assert from_files == coco_eval(gt, results)
    np.testing.assert_allclose([from_files[k] for k in KEYS], reference(gt, results).stats, atol=1e-9)


def test_inputs_not_mutated():
    gt, results = make_case(4, n_images=20)
    gt_copy, res_copy = copy.deepcopy(gt), copy.deepcopy(results)
    coco_eval(gt, results)
    assert gt == gt_copy and results == res_copy


def test_hand_computed_single_image():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                           "area": 100.0, "iscrowd": 0}]}
    # One exact hit, one lower-scored duplicate (a false positive after the hit).
    results = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8}]
    stats = coco_eval(gt, results)
    # precision is tp / (tp + fp + eps), hence 1 - 1e-16 rather than 1.
    assert stats["AP"] == pytest.approx(1.0, abs=1e-12) and stats["APs"] == pytest.approx(1.0, abs=1e-12)
    assert stats["AR1"] == 1.0
    assert stats["APm"] == -1.0 and stats["APl"] == -1.0 and stats["ARl"] == -1.0
    # Swap the scores of a miss and the hit: precision 1/2 at recall 1 for every threshold.
    results = [{"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.9},
               {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8}]
    stats = coco_eval(gt, results)
    assert stats["AP"] == pytest.approx(0.5) and stats["AR1"] == 0.0 and stats["AR10"] == 1.0


def test_crowd_region_absorbs_detections():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                           "area": 100.0, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 200, 200],
                           "area": 40000.0, "iscrowd": 1}]}
    # Small boxes inside the crowd region: IoU = intersection / detection area = 1, so ignored.
    results = [{"image_id": 1, "category_id": 1, "bbox": [120 + 5 * i, 120, 20, 20], "score": 0.95}
               for i in range(5)]
    results.append({"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5})
    assert coco_eval(gt, results)["AP"] == pytest.approx(1.0, abs=1e-12)


def test_empty_results_give_zero_not_error():
    gt, _ = make_case(5, n_images=20)
    stats = coco_eval(gt, [])
    assert stats["AP"] == 0.0 and stats["AR100"] == 0.0


def test_bad_inputs_raise_clear_errors(tmp_path):
    gt, results = make_case(6, n_images=20)
    with pytest.raises(CocoFormatError, match=r"results\[0\]: image_id 12345 is not in the ground truth"):
        coco_eval(gt, [dict(results[0], image_id=12345)])
    with pytest.raises(CocoFormatError, match=r"results\[1\] has no 'score' field"):
        coco_eval(gt, [results[0], {k: v for k, v in results[1].items() if k != "score"}])
    with pytest.raises(CocoFormatError, match=r"results\[0\]\['bbox'\] must be 4 numbers"):
        coco_eval(gt, [dict(results[0], bbox=[1, 2, 3])])
    bad_gt = copy.deepcopy(gt)
    del bad_gt["annotations"][2]["area"]
    with pytest.raises(CocoFormatError, match=r"annotations\[2\] has no 'area' field"):
        coco_eval(bad_gt, results)
    bad_gt = copy.deepcopy(gt)
    bad_gt["annotations"][1]["id"] = bad_gt["annotations"][0]["id"]
    with pytest.raises(CocoFormatError, match="duplicate id"):
        coco_eval(bad_gt, results)
    with pytest.raises(CocoFormatError, match="missing top-level key 'categories'"):
        coco_eval({"images": [], "annotations": []}, results)
    (tmp_path / "broken.json").write_text('{"images": [\n')
    with pytest.raises(CocoFormatError, match=r"broken.json: invalid JSON at line 2"):
        coco_eval(tmp_path / "broken.json", results)
    with pytest.raises(ValueError, match=r"iou_type must be one of \['bbox', 'segm'\], got 'keypoints'"):
        coco_eval(gt, results, iou_type="keypoints")
    with pytest.raises(ValueError, match="three positive integers"):
        coco_eval(gt, results, max_dets=(1, 10))
