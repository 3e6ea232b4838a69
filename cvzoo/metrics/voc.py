"""PASCAL VOC detection metrics: per-class AP and mAP (Everingham et al., IJCV 2010).

The algorithm is the one of the VOC devkit and of Detectron's ``voc_eval``: detections of a class
sorted by score (descending), each takes the ground truth of highest IoU in its image; it is a
true positive when that IoU is strictly above the threshold, the ground truth is not "difficult"
and not yet taken, a false positive otherwise - except that a detection whose best ground truth is
difficult counts as neither. AP is the area under the precision envelope (VOC2010+) or the mean
of the envelope at the 11 recalls 0, 0.1, ..., 1 (VOC2007).

Deviation from Detectron: score ties keep input order (stable sort) instead of numpy's
unstable quicksort order, so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from cvzoo.metrics.box_overlap import iou_pairs_xyxy


class VOCFormatError(ValueError):
    """Detections or annotations passed to :func:`voc_eval` are malformed."""


def voc_ap(recall: Any, precision: Any, use_07_metric: bool = False) -> float:
    """Average precision from a ranked recall/precision curve.

    Args:
        recall: ``[N]`` cumulative recall after each detection (non-decreasing).
        precision: ``[N]`` cumulative precision after each detection.
        use_07_metric: VOC2007 11-point interpolation instead of the all-point area.

    Returns:
        AP in [0, 1].

    Example:
        >>> round(voc_ap([0.5, 1.0], [1.0, 0.5]), 4)
        0.75
    """
    rec = np.asarray(recall, dtype=np.float64).reshape(-1)
    prec = np.asarray(precision, dtype=np.float64).reshape(-1)
    if rec.shape != prec.shape:
        raise ValueError(f"recall {rec.shape} and precision {prec.shape} must have the same length")
    if use_07_metric:
        # 0, 0.1, ..., 1 as the devkit's `0:0.1:1` produces them (3 * 0.1 = 0.30000000000000004).
        ap = 0.0
        for t in np.arange(11) * 0.1:
            reached = prec[rec >= t]
            ap += (reached.max() if reached.size else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    # Precision envelope: the best precision at this recall or any higher one.
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor, possibly on a GPU
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _items(records: Mapping | Sequence, what: str) -> list[tuple[Hashable, Mapping]]:
    if isinstance(records, Mapping):
        return list(records.items())
    if isinstance(records, Sequence) and not isinstance(records, (str, bytes)):
        return list(enumerate(records))
    raise VOCFormatError(f"{what} must be a mapping image_id -> dict or a list of dicts, got {type(records)}")


def _read(record: Mapping, key: str, where: str, shape_tail: tuple[int, ...], dtype=None) -> np.ndarray:
    if not isinstance(record, Mapping) or key not in record:
        raise VOCFormatError(f"{where}: missing key {key!r}")
    arr = _as_numpy(record[key])
    if dtype is not None:
        arr = arr.astype(dtype)
    if arr.size == 0:
        return arr.reshape((0, *shape_tail))
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise VOCFormatError(f"{where}[{key!r}] must have shape [N{''.join(f', {s}' for s in shape_tail)}], "
                             f"got {list(arr.shape)}")
    return arr


def _concat(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else empty


def _flatten(records: Mapping | Sequence, what: str, with_scores: bool) -> dict[str, Any]:
    images, boxes, labels, extra = [], [], [], []
    image_keys: list[Hashable] = []
    for image_index, (key, record) in enumerate(_items(records, what)):
        where = f"{what}[{key!r}]"
        b = _read(record, "boxes", where, (4,), np.float64)
        lab = _read(record, "labels", where, ())
        if with_scores:
            e = _read(record, "scores", where, (), np.float64)
        else:
            e = (_read(record, "difficult", where, (), bool) if "difficult" in record
                 else np.zeros(len(b), dtype=bool))
        if not (len(b) == len(lab) == len(e)):
            raise VOCFormatError(f"{where}: boxes, labels and {'scores' if with_scores else 'difficult'} "
                                 f"lengths differ ({len(b)}, {len(lab)}, {len(e)})")
        image_keys.append(key)
        images.append(np.full(len(b), image_index, dtype=np.int64))
        boxes.append(b)
        labels.append(lab)
        extra.append(e)
    return {
        "keys": image_keys,
        "image": _concat(images, np.zeros(0, np.int64)),
        "boxes": _concat(boxes, np.zeros((0, 4))),
        "labels": _concat(labels, np.zeros(0, np.int64)),
        "extra": _concat(extra, np.zeros(0)),
    }


def _class_curve(
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    iou_threshold: float,
    pixel_offset: float,
) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP indicator arrays (in score order) for one class."""
    order = np.argsort(-det_scores, kind="stable")
    det_image, det_boxes = det_image[order], det_boxes[order]
    # Every (detection, ground truth of the same image) pair.
    g_order = np.argsort(gt_image, kind="stable")
    g_img = gt_image[g_order]
    lo = np.searchsorted(g_img, det_image, "left")
    counts = np.searchsorted(g_img, det_image, "right") - lo
    pair_det = np.repeat(np.arange(det_image.size), counts)
    offsets = np.arange(pair_det.size) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = g_order[np.repeat(lo, counts) + offsets]
    iou = iou_pairs_xyxy(det_boxes[pair_det], gt_boxes[pair_gt], pixel_offset)
    # The best ground truth per detection; np.argmax semantics (first in image order on ties).
    best = np.lexsort((offsets, -iou, pair_det))
    first = np.ones(best.size, dtype=bool)
    first[1:] = pair_det[best[1:]] != pair_det[best[:-1]]
    best = best[first]
    ov_max = np.full(det_image.size, -np.inf)
    j_max = np.full(det_image.size, -1)
    ov_max[pair_det[best]] = iou[best]
    j_max[pair_det[best]] = pair_gt[best]
    hit = ov_max > iou_threshold
    difficult = np.zeros(det_image.size, dtype=bool)
    difficult[hit] = gt_difficult[j_max[hit]]
    claim = hit & ~difficult
    # Only the first (highest-scoring) claim on a ground truth is a true positive.
    tp = np.zeros(det_image.size, dtype=bool)
    claim_idx = np.flatnonzero(claim)
    _, first_claim = np.unique(j_max[claim_idx], return_index=True)
    tp[claim_idx[first_claim]] = True
    fp = ~tp & ~(hit & difficult)
    return tp, fp


def voc_eval(
    detections: Mapping | Sequence,
    annotations: Mapping | Sequence,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_offset: float = 1.0,
    classes: Sequence | None = None,
) -> dict[str, Any]:
    """Per-class VOC AP and mAP.

    Args:
        detections: ``{image_id: {"boxes": [M, 4] xyxy, "scores": [M], "labels": [M]}}`` or a list
            of such dicts (the index is the image id). numpy arrays, lists or torch tensors.
        annotations: ``{image_id: {"boxes": [N, 4] xyxy, "labels": [N], "difficult": [N] (optional)}}``
            or a list. Every image with detections must appear here.
        iou_threshold: a detection matches when IoU > threshold (strict, as the devkit).
        use_07_metric: VOC2007 11-point AP instead of the VOC2010+ all-point AP.
        pixel_offset: 1.0 for the devkit's inclusive-pixel boxes (numbers equal the devkit), 0.0
            for continuous coordinates.
        classes: labels to evaluate; default the sorted union of labels seen.

    Returns:
        ``{"ap": {cls: AP}, "precision": {cls: [D]}, "recall": {cls: [D]}, "num_positives": {cls: n},
        "mAP": mean AP}``. Classes without non-difficult ground truth get AP NaN and are left out of
        the mean.
    """
    gts = _flatten(annotations, "annotations", with_scores=False)
    dets = _flatten(detections, "detections", with_scores=True)
    key_to_gt = {key: i for i, key in enumerate(gts["keys"])}
    det_keys = dets["keys"]
    remap = np.empty(len(det_keys), dtype=np.int64)
    for i, key in enumerate(det_keys):
        if key not in key_to_gt:
            raise VOCFormatError(f"detections[{key!r}]: image has no entry in annotations")
        remap[i] = key_to_gt[key]
    det_image = remap[dets["image"]] if dets["image"].size else dets["image"]
    if classes is None:
        classes = sorted(set(gts["labels"].tolist()) | set(dets["labels"].tolist()), key=repr)
    return voc_eval_arrays(
        gts["image"], gts["boxes"], gts["labels"], gts["extra"].astype(bool),
        det_image, dets["boxes"], dets["extra"], dets["labels"],
        classes, iou_threshold, use_07_metric, pixel_offset,
    )


def voc_eval_arrays(
    gt_image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_labels: np.ndarray,
    gt_difficult: np.ndarray,
    det_image: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_labels: np.ndarray,
    classes: Sequence,
    iou_threshold: float = 0.5,
    use_07_metric: bool = False,
    pixel_offset: float = 1.0,
) -> dict[str, Any]:
    """:func:`voc_eval` on flat arrays (``[G]``/``[G, 4]`` ground truth, ``[D]``/``[D, 4]`` detections,
    boxes ``xyxy``, images as integer indices). Same return value."""
    out: dict[str, Any] = {"ap": {}, "precision": {}, "recall": {}, "num_positives": {}}
    for cls in classes:
        g = gt_labels == cls
        d = det_labels == cls
        difficult = gt_difficult[g]
        npos = int((~difficult).sum())
        tp, fp = _class_curve(
            gt_image[g], gt_boxes[g], difficult, det_image[d], det_boxes[d], det_scores[d],
            iou_threshold, pixel_offset,
        )
        tp_cum = np.cumsum(tp).astype(np.float64)
        fp_cum = np.cumsum(fp).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rec = tp_cum / float(npos)
        prec = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        out["ap"][cls] = voc_ap(rec, prec, use_07_metric) if npos > 0 else float("nan")
        out["precision"][cls] = prec
        out["recall"][cls] = rec
        out["num_positives"][cls] = npos
    aps = np.array([ap for ap in out["ap"].values() if not np.isnan(ap)])
    out["mAP"] = float(aps.mean()) if aps.size else float("nan")
    return out
