"""DetectionEvaluator: COCO numbers equal pycocotools, VOC mAP, class table, merge, errors."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cvzoo.metrics import DetectionEvaluator, DetectionInputError, voc_eval

KEYS = ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
NAMES = ["cat", "dog", "bird", "fish"]


def random_batches(seed: int, n_images: int = 24, crowd: bool = True):
    """Per-image (prediction, target) dicts: xyxy boxes, jittered hits, false positives, misses."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 300, (n, 2))
        wh = np.exp(rng.uniform(np.log(8), np.log(200), (n, 2)))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        labels = rng.integers(0, len(NAMES) - 1, n)  # the last class never has ground truth
        iscrowd = rng.random(n) < (0.1 if crowd else 0.0)
        keep = rng.random(n) < 0.8
        jitter = rng.normal(0, 0.08, (n, 4)) * np.concatenate([wh, wh], axis=1)
        det = (boxes + jitter)[keep]
        det_labels = np.where(rng.random(n) < 0.9, labels, rng.integers(0, len(NAMES), n))[keep]
        m = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 300, (m, 2))
        fp = np.concatenate([fxy, fxy + rng.uniform(10, 100, (m, 2))], axis=1)
        preds.append({"boxes": torch.tensor(np.concatenate([det, fp]), dtype=torch.float32),
                      "scores": torch.tensor(rng.random(len(det) + m), dtype=torch.float32),
                      "labels": torch.tensor(np.concatenate([det_labels, rng.integers(0, len(NAMES), m)]))})
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
                        "iscrowd": torch.tensor(iscrowd)})
    return preds, targets


def pycocotools_stats(preds, targets) -> np.ndarray:
    images, anns, results = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets)):
        images.append({"id": i})
        for box, label, crowd in zip(t["boxes"].double().tolist(), t["labels"].tolist(), t["iscrowd"].tolist()):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label,
                         "bbox": [box[0], box[1], w, h], "area": w * h, "iscrowd": int(crowd)})
        for box, score, label in zip(p["boxes"].double().tolist(), p["scores"].double().tolist(),
                                     p["labels"].tolist()):
            results.append({"image_id": i, "category_id": label, "score": score,
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]]})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": k} for k in range(len(NAMES))]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


@pytest.mark.parametrize("seed", range(6))
def test_coco_numbers_equal_pycocotools(seed):
    preds, targets = random_batches(seed)
    ev = DetectionEvaluator(NAMES)
    for start in range(0, len(preds), 5):
        ev.update(preds[start:start + 5], targets[start:start + 5])
    out = ev.compute()
    np.testing.assert_allclose([out[k] for k in KEYS], pycocotools_stats(preds, targets), atol=1e-9)


def test_voc_map_matches_voc_eval_and_per_class_rows():
    preds, targets = random_batches(11, crowd=False)
    ev = DetectionEvaluator(NAMES)
    ev.update(preds, targets)
    out = ev.compute()
    voc = voc_eval(dict(enumerate(preds)), dict(enumerate(targets)), pixel_offset=0.0, classes=range(4))
    assert out["VOC_mAP50"] == pytest.approx(voc["mAP"], abs=1e-12)
    rows = {r["class"]: r for r in out["per_class"]}
    assert rows["fish"]["instances"] == 0 and rows["fish"]["mAP50"] == -1.0
    for k, name in enumerate(NAMES[:3]):
        assert rows[name]["instances"] == sum(int((t["labels"] == k).sum()) for t in targets)
        assert rows[name]["images"] == sum(int((t["labels"] == k).any()) for t in targets)
    defined = [r["mAP50-95"] for r in out["per_class"] if r["instances"] > 0]
    assert np.mean(defined) == pytest.approx(out["AP"], abs=1e-12)
    table = ev.format_table(out)
    assert table.splitlines()[0].split() == ["Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95"]
    all_row = table.splitlines()[1].split()
    assert all_row[:2] == ["all", str(len(targets))] and float(all_row[6]) == pytest.approx(out["AP"], abs=5e-4)
    assert "fish" not in table


def test_precision_recall_at_best_mean_f1():
    # Two ground truths; ranked detections TP (0.9), FP (0.8), TP (0.7). Thresholds <= 0.7 keep all:
    # P = 2/3, R = 1, F1 = 0.8, the best (0.667 above 0.8, 0.5 in between).
    targets = [{"boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "labels": [0, 0]}]
    preds = [{"boxes": [[0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 60, 60]],
              "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}]
    ev = DetectionEvaluator(["a"])
    ev.update(preds, targets)
    out = ev.compute()
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == 1.0
    assert out["confidence"] <= 0.7
    assert out["per_class"][0]["P"] == pytest.approx(2 / 3)


def test_difficult_ground_truth_is_ignored():
    target = {"boxes": [[0, 0, 10, 10], [50, 50, 80, 80]], "labels": [0, 0], "difficult": [False, True]}
    pred = {"boxes": [[0, 0, 10, 10], [50, 50, 80, 80]], "scores": [0.5, 0.9], "labels": [0, 0]}
    with_difficult = DetectionEvaluator(["a"])
    with_difficult.update([pred], [target])
    without = DetectionEvaluator(["a"])
    without.update([{"boxes": [[0, 0, 10, 10]], "scores": [0.5], "labels": [0]}],
                   [{"boxes": [[0, 0, 10, 10]], "labels": [0]}])
    a, b = with_difficult.compute(), without.compute()
    # The detection on the difficult box is neither TP nor FP; it still uses a per-image slot, as
    # in COCO, so with one detection per image (AR1) the real hit is cut off.
    for key in [*KEYS, "VOC_mAP50"]:
        if key != "AR1":
            assert a[key] == b[key], key
    assert a["AR1"] == 0.0 and b["AR1"] == 1.0
    assert a["AP"] == pytest.approx(1.0, abs=1e-12)


def test_merge_equals_single_pass_and_state_roundtrip():
    preds, targets = random_batches(5)
    single = DetectionEvaluator(NAMES)
    single.update(preds, targets)
    first, second = DetectionEvaluator(NAMES), DetectionEvaluator(NAMES)
    first.update(preds[:10], targets[:10])
    second.update(preds[10:], targets[10:])
    merged = DetectionEvaluator(NAMES)
    merged.merge(first.state())
    merged.merge(second)
    assert merged.num_images == len(preds)
    a, b = single.compute(), merged.compute()
    assert {k: a[k] for k in KEYS} == {k: b[k] for k in KEYS}
    np.testing.assert_array_equal(single.confusion_matrix(), merged.confusion_matrix())
    with pytest.raises(ValueError, match="different class_names"):
        merged.merge(DetectionEvaluator(["x"]))


def test_empty_evaluator_and_reset():
    ev = DetectionEvaluator(NAMES)
    out = ev.compute()
    assert out["AP"] == -1.0 and out["VOC_mAP50"] == -1.0
    preds, targets = random_batches(1)
    ev.update(preds, targets)
    ev.reset()
    assert ev.num_images == 0 and ev.compute()["AP"] == -1.0


def test_bad_inputs_raise_clear_errors():
    ev = DetectionEvaluator(["a", "b"])
    good_t = {"boxes": [[0, 0, 1, 1]], "labels": [0]}
    good_p = {"boxes": [[0, 0, 1, 1]], "scores": [1.0], "labels": [0]}
    with pytest.raises(DetectionInputError, match=r"target of image 0: labels must be in \[0, 2\)"):
        ev.update([good_p], [{"boxes": [[0, 0, 1, 1]], "labels": [5]}])
    with pytest.raises(DetectionInputError, match=r"prediction of image 0: boxes must be \[1, 4\]"):
        ev.update([{"boxes": [[0, 0, 1]], "scores": [1.0], "labels": [0]}], [good_t])
    with pytest.raises(DetectionInputError, match="missing 'scores'"):
        ev.update([{"boxes": [[0, 0, 1, 1]], "labels": [0]}], [good_t])
    with pytest.raises(DetectionInputError, match="1 predictions for 2 targets"):
        ev.update([good_p], [good_t, good_t])
    with pytest.raises(DetectionInputError, match="'iscrowd' has 2 entries, expected 1"):
        ev.update([good_p], [dict(good_t, iscrowd=[0, 1])])
    with pytest.raises(ValueError, match="must not be empty"):
        DetectionEvaluator([])
