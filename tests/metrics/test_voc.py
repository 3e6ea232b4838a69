"""PASCAL VOC AP: the notes' worked example and equality with a transcription of Detectron voc_eval."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cvzoo.metrics.voc import VOCFormatError, voc_ap, voc_eval

# Seven ground truths in seven images; ranked detections TP TP TP TP FP FP TP.
# Recall levels 1/7 .. 5/7, precisions 1, 1, 1, 1, 4/5, 4/6, 5/7: the envelope is 1 up to 4/7 and
# 5/7 at 5/7, so the all-point AP is 4/7 + (1/7)(5/7) = 4/7 + 5/49.
SEQUENCE = [True, True, True, True, False, False, True]


def _worked_example() -> tuple[dict, dict]:
    annotations, detections = {}, {}
    scores = np.linspace(0.95, 0.35, len(SEQUENCE))
    for i in range(7):
        annotations[f"img{i}"] = {"boxes": [[10, 10, 50, 50]], "labels": ["dog"]}
    for rank, (is_tp, score) in enumerate(zip(SEQUENCE, scores)):
        box = [10, 10, 50, 50] if is_tp else [200, 200, 240, 240]
        detections[f"img{rank}"] = {"boxes": [box], "scores": [score], "labels": ["dog"]}
    return detections, annotations


def test_worked_example_rounded_recalls_gives_notes_value():
    recall = [0.14, 0.28, 0.42, 0.57, 0.57, 0.57, 0.71]
    precision = [1.0, 1.0, 1.0, 1.0, 0.8, 0.67, 0.71]
    assert voc_ap(recall, precision) == pytest.approx(0.6694, abs=1e-12)


def test_worked_example_exact_sequence_through_voc_eval():
    detections, annotations = _worked_example()
    out = voc_eval(detections, annotations)
    assert out["ap"]["dog"] == pytest.approx(4 / 7 + 5 / 49, abs=1e-12)
    assert round(out["ap"]["dog"], 4) == 0.6735
    np.testing.assert_allclose(out["recall"]["dog"], np.cumsum(SEQUENCE) / 7)
    np.testing.assert_allclose(out["precision"]["dog"][-1], 5 / 7)
    assert out["num_positives"]["dog"] == 7
    assert out["mAP"] == out["ap"]["dog"]


def test_voc07_eleven_point():
    detections, annotations = _worked_example()
    ap07 = voc_eval(detections, annotations, use_07_metric=True)["ap"]["dog"]
    # Recall thresholds 0..0.5 see precision 1 (0.5 < 4/7), 0.6 and 0.7 see 5/7, 0.8..1 see 0.
    assert ap07 == pytest.approx((6 * 1.0 + 2 * 5 / 7) / 11, abs=1e-12)


def test_voc_ap_edge_cases():
    assert voc_ap([], []) == 0.0
    assert voc_ap([1.0], [1.0]) == 1.0
    with pytest.raises(ValueError, match="same length"):
        voc_ap([0.1, 0.2], [1.0])


# ---------------------------------------------------------------------------------------------
# Reference: a plain transcription of Detectron's voc_eval loop (stable sort on ties).
def _reference_voc_eval(detections, annotations, cls, ovthresh, use_07, offset):
    class_recs, npos = {}, 0
    for key, ann in annotations.items():
        labels = np.asarray(ann["labels"])
        mask = labels == cls
        bbox = np.asarray(ann["boxes"], dtype=float).reshape(-1, 4)[mask]
        difficult = np.asarray(ann.get("difficult", np.zeros(len(labels))), dtype=bool)[mask]
        class_recs[key] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(bbox)}
        npos += int((~difficult).sum())
    image_ids, confidence, boxes = [], [], []
    for key, det in detections.items():
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
            if label == cls:
                image_ids.append(key)
                confidence.append(score)
                boxes.append(box)
    confidence = np.array(confidence, dtype=float)
    bb_all = np.array(boxes, dtype=float).reshape(-1, 4)
    order = np.argsort(-confidence, kind="stable")
    bb_all = bb_all[order]
    image_ids = [image_ids[i] for i in order]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        rec = class_recs[image_ids[d]]
        bb = bb_all[d]
        ovmax = -np.inf
        bbgt = rec["bbox"]
        if bbgt.size > 0:
            ixmin = np.maximum(bbgt[:, 0], bb[0])
            iymin = np.maximum(bbgt[:, 1], bb[1])
            ixmax = np.minimum(bbgt[:, 2], bb[2])
            iymax = np.minimum(bbgt[:, 3], bb[3])
            iw = np.maximum(ixmax - ixmin + offset, 0.0)
            ih = np.maximum(iymax - iymin + offset, 0.0)
            inters = iw * ih
            uni = ((bb[2] - bb[0] + offset) * (bb[3] - bb[1] + offset)
                   + (bbgt[:, 2] - bbgt[:, 0] + offset) * (bbgt[:, 3] - bbgt[:, 1] + offset) - inters)
            overlaps = inters / uni
            ovmax = np.max(overlaps)
            jmax = np.argmax(overlaps)
        if ovmax > ovthresh:
            if not rec["difficult"][jmax]:
                if not rec["det"][jmax]:
                    tp[d] = 1.0
                    rec["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap, rec, prec
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]), rec, prec


def _random_case(seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    annotations, detections = {}, {}
    for image in range(int(rng.integers(5, 25))):
        n = int(rng.integers(0, 6))
        xy = rng.integers(0, 300, (n, 2)).astype(float)
        wh = rng.integers(4, 120, (n, 2)).astype(float)
        gt = np.concatenate([xy, xy + wh], axis=1)
        if n and rng.random() < 0.2:  # duplicate box: argmax ties
            gt = np.concatenate([gt, gt[:1]])
        labels = rng.integers(0, 3, len(gt))
        annotations[f"im{image}"] = {"boxes": gt, "labels": labels, "difficult": rng.random(len(gt)) < 0.2}
        if rng.random() < 0.15:
            continue
        jitter = rng.normal(0, 6, gt.shape).round(rng.integers(0, 2))
        jittered = gt + jitter
        jittered[:, 2:] = np.maximum(jittered[:, 2:], jittered[:, :2] + 1)  # keep boxes valid
        dets = [jittered, gt.copy()] if len(gt) else []
        m = int(rng.integers(0, 5))
        xy = rng.integers(0, 300, (m, 2)).astype(float)
        dets.append(np.concatenate([xy, xy + rng.integers(4, 120, (m, 2))], axis=1))
        boxes = np.concatenate(dets)
        det_labels = np.concatenate([labels, labels, rng.integers(0, 3, m)])[: len(boxes)]
        scores = rng.random(len(boxes)).round(1)  # ties
        detections[f"im{image}"] = {"boxes": boxes, "scores": scores, "labels": det_labels}
    return detections, annotations


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize(("use_07", "offset", "thr"), [(False, 1.0, 0.5), (True, 1.0, 0.5), (False, 0.0, 0.7)])
def test_equals_detectron_transcription(seed, use_07, offset, thr):
    detections, annotations = _random_case(seed)
    out = voc_eval(detections, annotations, iou_threshold=thr, use_07_metric=use_07, pixel_offset=offset)
    for cls in range(3):
        has_pos = out["num_positives"].get(cls, 0) > 0
        if not has_pos:
            assert cls not in out["ap"] or np.isnan(out["ap"][cls])
            continue
        ap, rec, prec = _reference_voc_eval(detections, annotations, cls, thr, use_07, offset)
        assert out["ap"][cls] == ap
        np.testing.assert_array_equal(out["recall"][cls], rec)
        np.testing.assert_array_equal(out["precision"][cls], prec)


def test_difficult_neither_tp_nor_fp_and_duplicates_are_fp():
    annotations = {0: {"boxes": [[0, 0, 10, 10], [50, 50, 60, 60]], "labels": [1, 1], "difficult": [False, True]}}
    detections = {0: {"boxes": [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60]],
                      "scores": [0.9, 0.8, 0.7], "labels": [1, 1, 1]}}
    out = voc_eval(detections, annotations)
    np.testing.assert_allclose(out["precision"][1], [1.0, 0.5, 0.5])  # difficult hit changes nothing
    np.testing.assert_allclose(out["recall"][1], [1.0, 1.0, 1.0])
    assert out["ap"][1] == 1.0


def test_pixel_offset_changes_iou():
    # 10x10 box vs shifted by 4: continuous IoU 60/140 = 0.43; with +1 pixels 77/165 = 0.467.
    annotations = [{"boxes": [[0, 0, 10, 10]], "labels": [0]}]
    detections = [{"boxes": [[0, 4, 10, 14]], "scores": [1.0], "labels": [0]}]
    assert voc_eval(detections, annotations, iou_threshold=0.45, pixel_offset=1.0)["ap"][0] == 1.0
    assert voc_eval(detections, annotations, iou_threshold=0.45, pixel_offset=0.0)["ap"][0] == 0.0


def test_torch_inputs_and_list_form():
    annotations = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([2])}]
    detections = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.5]),
                   "labels": torch.tensor([2])}]
    assert voc_eval(detections, annotations)["mAP"] == 1.0


def test_class_without_positives_is_nan_and_left_out_of_map():
    annotations = {0: {"boxes": [[0, 0, 10, 10]], "labels": [0]}}
    detections = {0: {"boxes": [[0, 0, 10, 10], [0, 0, 10, 10]], "scores": [0.9, 0.5], "labels": [0, 1]}}
    out = voc_eval(detections, annotations)
    assert np.isnan(out["ap"][1]) and out["mAP"] == 1.0


def test_bad_inputs_raise_clear_errors():
    good_ann = {0: {"boxes": [[0, 0, 1, 1]], "labels": [0]}}
    with pytest.raises(VOCFormatError, match=r"detections\[7\]: image has no entry"):
        voc_eval({7: {"boxes": [[0, 0, 1, 1]], "scores": [1.0], "labels": [0]}}, good_ann)
    with pytest.raises(VOCFormatError, match=r"missing key 'scores'"):
        voc_eval({0: {"boxes": [[0, 0, 1, 1]], "labels": [0]}}, good_ann)
    with pytest.raises(VOCFormatError, match=r"\['boxes'\] must have shape \[N, 4\]"):
        voc_eval({}, {0: {"boxes": [[0, 0, 1]], "labels": [0]}})
    with pytest.raises(VOCFormatError, match="lengths differ"):
        voc_eval({0: {"boxes": [[0, 0, 1, 1]], "scores": [1.0, 0.5], "labels": [0]}}, good_ann)
