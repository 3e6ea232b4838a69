"""COCO detection metrics: the 12 summary numbers of the COCO API for boxes and masks, vectorised.

``coco_eval(gt, results, iou_type)`` gives the same numbers as the reference ``pycocotools`` pipeline
(``COCO.loadRes`` + ``COCOeval(iouType=...)`` + ``evaluate/accumulate/summarize``) to within
floating-point summation order, for ``iou_type="bbox"`` and ``"segm"``, including its conventions:

* results get ids ``1..N`` in file order; results for categories absent from the ground truth are
  dropped, results for unknown images are an error;
* ground-truth ``ignore`` fields have no effect (the reference overwrites them with ``iscrowd``);
  crowd regions are ignored, their IoU is intersection / detection area;
* at most ``max_dets[-1]`` detections per (image, category) by score (stable sort on ties);
* area ranges use the annotation ``area`` field (closed ranges); a detection's area is its box area
  ``w * h`` for ``bbox``, and for ``segm`` its mask area, or its box area when the first result
  carries a ``bbox`` (``loadRes`` then reads all results as box results);
* IoU only between detections and ground truths of one image and category: box IoU with the
  reference's arithmetic, or mask IoU (ground-truth polygons, uncompressed and compressed RLE
  rasterised as ``COCO.annToRLE`` does; see :mod:`cvzoo.metrics.coco_segm`);
* 101-point interpolated precision with the monotone envelope; -1 where undefined.

Box and mask evaluation share the loading, matching and accumulation; only the pair IoU differs.
The mask side (:mod:`cvzoo.metrics.coco_segm`, which needs ``cvzoo.ops`` and so torch) is imported
only for ``iou_type="segm"``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cvzoo.metrics.coco_matching import (
    DetectionArrays,
    GroundTruthArrays,
    MatchResult,
    accumulate,
    match_detections,
)

STAT_NAMES_AP = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("bbox", "segm")
AREA_LABELS = ("all", "small", "medium", "large")


class CocoFormatError(ValueError):
    """A COCO ground-truth or results structure is malformed."""


@dataclass(frozen=True)
class CocoParams:
    """Evaluation settings (the COCO defaults for boxes).

    Attributes:
        iou_thresholds: ``[T]`` IoU thresholds 0.50:0.05:0.95 (``linspace``, as the reference, so
            that 0.75 is the same float).
        recall_thresholds: ``[R]`` recall points 0:0.01:1.
        max_dets: ``[M]`` sorted per-image detection limits.
        area_ranges: ``[A, 2]`` closed area ranges all / small / medium / large.
        iou_type: ``"bbox"`` (box IoU) or ``"segm"`` (mask IoU; the arrays must carry ``masks``).
    """

    iou_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(0.5, 0.95, 10))
    recall_thresholds: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 1.0, 101))
    max_dets: np.ndarray = field(default_factory=lambda: np.array([1, 10, 100]))
    area_ranges: np.ndarray = field(
        default_factory=lambda: np.array([[0.0, 1e10], [0.0, 32.0**2], [32.0**2, 96.0**2], [96.0**2, 1e10]])
    )
    iou_type: str = "bbox"


@dataclass(frozen=True)
class CocoEvaluation:
    """Everything the accumulation produced.

    Attributes:
        precision: ``[T, R, K, A, M]`` interpolated precision, -1 where undefined.
        recall: ``[T, K, A, M]`` maximum recall, -1 where undefined.
        params: the :class:`CocoParams` used.
        match: per-detection matching (see :class:`~cvzoo.metrics.coco_matching.MatchResult`).
        num_gt: ``[K]`` non-ignored ground truths per category in the "all" area range.
    """

    precision: np.ndarray
    recall: np.ndarray
    params: CocoParams
    match: MatchResult
    num_gt: np.ndarray


def evaluate_arrays(
    gt: GroundTruthArrays,
    dt: DetectionArrays,
    num_categories: int,
    params: CocoParams | None = None,
) -> CocoEvaluation:
    """Match and accumulate in-memory arrays (no JSON round trip).

    Args:
        gt: ground truth, indices into a fixed image and category list.
        dt: detections with the same indexing.
        num_categories: number of categories ``K``.
        params: evaluation settings; COCO defaults when None.

    Returns:
        A :class:`CocoEvaluation`; pass it to :func:`summarize` for the 12 numbers.
    """
    params = params or CocoParams()
    max_dets = np.sort(np.asarray(params.max_dets))
    if params.iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {list(IOU_TYPES)}, got {params.iou_type!r}")
    pair_iou = None
    if params.iou_type == "segm":
        from cvzoo.metrics.coco_segm import mask_pair_iou  # imports torch (via cvzoo.ops): only when asked

        pair_iou = mask_pair_iou(gt, dt)
    match = match_detections(
        gt, dt, num_categories, params.iou_thresholds, params.area_ranges, int(max_dets[-1]), pair_iou
    )
    precision, recall = accumulate(match, gt, num_categories, params.recall_thresholds, max_dets)
    counted = ~match.gt_ignored[0]
    num_gt = np.bincount(gt.category_index[counted], minlength=num_categories)
    return CocoEvaluation(precision, recall, params, match, num_gt)


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else -1.0


def summarize(evaluation: CocoEvaluation) -> dict[str, float]:
    """The 12 COCO summary numbers (AP, AP50, AP75, APs/m/l, AR1, AR10, AR100, ARs/m/l).

    AP and AR at the largest ``max_dets``; AR at each of the three limits. Means skip -1 entries.
    """
    p = evaluation.params
    max_dets = np.sort(np.asarray(p.max_dets))
    if max_dets.size != 3:
        raise ValueError(f"summarize needs exactly 3 max_dets values, got {max_dets.tolist()}")
    thr_index = {0.5: int(np.argmin(np.abs(p.iou_thresholds - 0.5))),
                 0.75: int(np.argmin(np.abs(p.iou_thresholds - 0.75)))}
    prec, rec = evaluation.precision, evaluation.recall
    last = max_dets.size - 1
    stats = {
        "AP": _mean_defined(prec[:, :, :, 0, last]),
        "AP50": _mean_defined(prec[thr_index[0.5], :, :, 0, last]),
        "AP75": _mean_defined(prec[thr_index[0.75], :, :, 0, last]),
        "APs": _mean_defined(prec[:, :, :, 1, last]),
        "APm": _mean_defined(prec[:, :, :, 2, last]),
        "APl": _mean_defined(prec[:, :, :, 3, last]),
    }
    for m, limit in enumerate(max_dets.tolist()):
        stats[f"AR{limit}"] = _mean_defined(rec[:, :, 0, m])
    stats["ARs"] = _mean_defined(rec[:, :, 1, last])
    stats["ARm"] = _mean_defined(rec[:, :, 2, last])
    stats["ARl"] = _mean_defined(rec[:, :, 3, last])
    return stats


def per_class_ap(evaluation: CocoEvaluation) -> np.ndarray:
    """``[K]`` AP@[.5:.95] per category (area all, largest max_dets), -1 without ground truth."""
    prec = evaluation.precision[:, :, :, 0, -1]
    return np.array([_mean_defined(prec[:, :, k]) for k in range(prec.shape[2])])


def _load_json(source: str | Path, what: str) -> Any:
    try:
        with open(source, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise CocoFormatError(f"{what} file {source}: invalid JSON at line {err.lineno}: {err.msg}") from err


def _field(records: Sequence[Mapping[str, Any]], key: str, where: str, default: Any = None) -> list:
    """``[r[key] for r in records]`` with an error naming the first record that lacks the key."""
    try:
        if default is None:
            return [r[key] for r in records]
        return [r.get(key, default) for r in records]
    except (KeyError, TypeError, AttributeError):
        for i, record in enumerate(records):
            if not isinstance(record, Mapping) or (default is None and key not in record):
                raise CocoFormatError(f"{where}[{i}] has no {key!r} field: {record!r:.200}") from None
        raise


def _boxes(values: list, where: str) -> np.ndarray:
    """``[N, 4]`` float64 boxes from a list of 4-number lists (fast path: one ``fromiter``)."""
    n = len(values)
    try:
        lengths = np.fromiter(map(len, values), dtype=np.int64, count=n)
        if (lengths == 4).all():
            flat = np.fromiter(itertools.chain.from_iterable(values), dtype=np.float64, count=4 * n)
            return flat.reshape(n, 4)
    except (TypeError, ValueError):
        pass
    for i, box in enumerate(values):
        if not isinstance(box, (list, tuple, np.ndarray)) or len(box) != 4:
            raise CocoFormatError(f"{where}[{i}]['bbox'] must be 4 numbers [x, y, w, h], got {box!r:.100}")
        try:
            [float(v) for v in box]
        except (TypeError, ValueError):
            raise CocoFormatError(f"{where}[{i}]['bbox'] is not numeric: {box!r:.100}") from None
    raise CocoFormatError(f"{where}: 'bbox' values are not numeric")


def _index_of(ids: list, sorted_ids: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``ids`` in ``sorted_ids`` and a mask of which were found."""
    values = np.asarray(ids)
    if values.size == 0 or sorted_ids.size == 0:
        return np.zeros(values.size, dtype=np.int64), np.zeros(values.size, dtype=bool)
    try:
        pos = np.minimum(np.searchsorted(sorted_ids, values), sorted_ids.size - 1)
    except TypeError as err:
        raise CocoFormatError(f"{where}: ids of mixed types cannot be matched ({err})") from err
    return pos.astype(np.int64), np.asarray(sorted_ids[pos] == values, dtype=bool)


def _unique_ids(records: Sequence[Mapping[str, Any]], where: str) -> np.ndarray:
    ids = np.asarray(_field(records, "id", where))
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise CocoFormatError(f"{where}: duplicate id {unique[counts > 1][0]!r}")
    return unique


def _read_ground_truth(gt: str | Path | Mapping[str, Any]) -> tuple[Mapping[str, Any], str]:
    where = str(gt) if isinstance(gt, (str, Path)) else "ground truth"
    data = _load_json(gt, "ground-truth") if isinstance(gt, (str, Path)) else gt
    if not isinstance(data, Mapping):
        raise CocoFormatError(f"{where}: expected a COCO dict, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise CocoFormatError(f"{where}: missing top-level key {key!r}")
    return data, where


def _check_iou_type(iou_type: str) -> None:
    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {list(IOU_TYPES)}, got {iou_type!r}")


def load_ground_truth(
    gt: str | Path | Mapping[str, Any], iou_type: str = "bbox"
) -> tuple[GroundTruthArrays, np.ndarray, np.ndarray]:
    """Read a COCO ground-truth dataset into arrays.

    Args:
        gt: path to a COCO JSON file or the parsed dict (``images``, ``annotations``, ``categories``).
        iou_type: ``"bbox"`` reads the ``bbox`` fields; ``"segm"`` reads the ``segmentation`` fields
            into ``masks`` (polygons need the image's ``height`` and ``width``) and needs no ``bbox``.

    Returns:
        ``(arrays, image_ids, category_ids)``: the ids sorted, indices in the arrays refer to them.
        Annotations of images or categories not listed are left out, as the reference does.

    Raises:
        CocoFormatError: on a missing key, a malformed box or duplicate ids; for ``segm`` also a
            malformed segmentation or one whose size differs from its image's (naming the annotation id).
    """
    _check_iou_type(iou_type)
    data, where = _read_ground_truth(gt)
    arrays, image_ids, category_ids, _ = _ground_truth_arrays(data, where, iou_type)
    return arrays, image_ids, category_ids


def _ground_truth_arrays(
    data: Mapping[str, Any], where: str, iou_type: str
) -> tuple[GroundTruthArrays, np.ndarray, np.ndarray, np.ndarray | None]:
    """The arrays, ids and (for ``segm``) the ``[I, 2]`` image sizes of a parsed ground truth."""
    image_ids = _unique_ids(data["images"], f"{where} images")
    category_ids = _unique_ids(data["categories"], f"{where} categories")
    anns = data["annotations"]
    _unique_ids(anns, f"{where} annotations")
    img_pos, img_ok = _index_of(_field(anns, "image_id", f"{where} annotations"), image_ids, where)
    cat_pos, cat_ok = _index_of(_field(anns, "category_id", f"{where} annotations"), category_ids, where)
    keep = img_ok & cat_ok
    areas = np.asarray(_field(anns, "area", f"{where} annotations"), dtype=np.float64).reshape(-1)
    crowd = np.asarray(_field(anns, "iscrowd", f"{where} annotations", default=0)).astype(bool).reshape(-1)
    ids = np.asarray(_field(anns, "id", f"{where} annotations")).reshape(-1)
    int_ids = ids.astype(np.int64) if ids.dtype.kind in "iub" else np.ones(ids.size, dtype=np.int64)
    masks, sizes = None, None
    if iou_type == "segm":
        from cvzoo.metrics import coco_segm  # imports torch (via cvzoo.ops): only when asked

        sizes = coco_segm.image_sizes(data["images"], image_ids)
        try:
            masks = coco_segm.ground_truth_masks(anns, np.flatnonzero(keep), img_pos[keep], sizes, where)
        except ValueError as err:
            raise CocoFormatError(str(err)) from None
        boxes = masks.bboxes()
    else:
        boxes = _boxes(_field(anns, "bbox", f"{where} annotations"), f"{where} annotations")[keep]
    arrays = GroundTruthArrays(
        image_index=img_pos[keep],
        category_index=cat_pos[keep],
        boxes=boxes,
        areas=areas[keep],
        iscrowd=crowd[keep],
        ignore=np.zeros(int(keep.sum()), dtype=bool),
        ids=int_ids[keep],
        masks=masks,
    )
    return arrays, image_ids, category_ids, sizes


def load_results(
    results: str | Path | Sequence[Mapping[str, Any]],
    image_ids: np.ndarray,
    category_ids: np.ndarray,
    iou_type: str = "bbox",
    image_sizes: np.ndarray | None = None,
) -> DetectionArrays:
    """Read COCO results: ``image_id``, ``category_id``, ``score`` and ``bbox`` (xywh) or ``segmentation``.

    Args:
        results: results JSON path or list of dicts.
        image_ids, category_ids: sorted ids of the ground truth (:func:`load_ground_truth`).
        iou_type: ``"bbox"`` or ``"segm"`` (results carry ``segmentation``, usually compressed RLE;
            the arrays then hold the ``masks`` and their ``areas``, and ``boxes`` only when the
            results are box results).
        image_sizes: ``[I, 2]`` image (height, width), -1 where unknown: polygons in ``segm``
            results need it, and mask sizes are checked against it. None: all unknown.

    Raises:
        CocoFormatError: on a missing field, a malformed box or segmentation or an ``image_id`` not
            in the ground truth (naming the result's position).
    """
    _check_iou_type(iou_type)
    where = str(results) if isinstance(results, (str, Path)) else "results"
    records = _load_json(results, "results") if isinstance(results, (str, Path)) else results
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise CocoFormatError(f"{where}: expected a list of detections, got {type(records).__name__}")
    img_pos, img_ok = _index_of(_field(records, "image_id", where), image_ids, where)
    if not img_ok.all():
        bad = int(np.flatnonzero(~img_ok)[0])
        raise CocoFormatError(
            f"{where}[{bad}]: image_id {records[bad]['image_id']!r} is not in the ground truth"
        )
    cat_pos, cat_ok = _index_of(_field(records, "category_id", where), category_ids, where)
    scores = np.asarray(_field(records, "score", where), dtype=np.float64).reshape(-1)
    if iou_type == "bbox":
        boxes = _boxes(_field(records, "bbox", where), where)
        return DetectionArrays(img_pos[cat_ok], cat_pos[cat_ok], boxes[cat_ok], scores[cat_ok])

    from cvzoo.metrics import coco_segm  # imports torch (via cvzoo.ops): only when asked

    rows = np.flatnonzero(cat_ok)
    sizes = image_sizes if image_sizes is not None else np.full((image_ids.size, 2), -1, dtype=np.int64)
    box_results = coco_segm.first_result_has_box(records)
    boxes = _boxes(_field(records, "bbox", where), where)[cat_ok] if box_results else None
    try:
        masks = coco_segm.result_masks(records, rows, img_pos[cat_ok], sizes, boxes, where)
    except ValueError as err:
        raise CocoFormatError(str(err)) from None
    # Mask results need no boxes (the mask IoU finds the boxes it needs for the pairs it looks at).
    areas = masks.areas().astype(np.float64) if boxes is None else boxes[:, 2] * boxes[:, 3]
    return DetectionArrays(img_pos[cat_ok], cat_pos[cat_ok], boxes, scores[cat_ok], areas=areas, masks=masks)


def coco_eval(
    gt: str | Path | Mapping[str, Any],
    results: str | Path | Sequence[Mapping[str, Any]],
    iou_type: str = "bbox",
    max_dets: Sequence[int] = (1, 10, 100),
    per_class: bool = False,
) -> dict[str, Any]:
    """COCO box or mask AP/AR, equal to the ``pycocotools`` summary.

    Args:
        gt: COCO ground-truth JSON path or dict.
        results: results JSON path or list of ``{image_id, category_id, bbox: [x, y, w, h], score}``
            (``bbox``) or ``{image_id, category_id, segmentation: RLE, score}`` (``segm``).
        iou_type: ``"bbox"`` or ``"segm"``.
        max_dets: three per-image detection limits.
        per_class: also return ``"per_class": {category_id: AP}`` (AP@[.5:.95], -1 without GT).

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"}``
        (AR keys named after ``max_dets``) as floats in [0, 1], -1 where undefined.

    Example:
        >>> stats = coco_eval("instances_val2017.json", "detections.json")  # doctest: +SKIP
        >>> stats["AP"]  # doctest: +SKIP
        >>> coco_eval("instances_val2017.json", "masks.json", iou_type="segm")["AP"]  # doctest: +SKIP
    """
    _check_iou_type(iou_type)
    limits = sorted(int(m) for m in max_dets)
    if len(limits) != 3 or limits[0] < 1:
        raise ValueError(f"max_dets must be three positive integers, got {list(max_dets)}")
    data, where = _read_ground_truth(gt)
    gt_arrays, image_ids, category_ids, sizes = _ground_truth_arrays(data, where, iou_type)
    dt_arrays = load_results(results, image_ids, category_ids, iou_type, sizes)
    params = CocoParams(max_dets=np.array(limits), iou_type=iou_type)
    evaluation = evaluate_arrays(gt_arrays, dt_arrays, category_ids.size, params)
    out: dict[str, Any] = summarize(evaluation)
    if per_class:
        out["per_class"] = {
            (cid.item() if hasattr(cid, "item") else cid): float(ap)
            for cid, ap in zip(category_ids, per_class_ap(evaluation))
        }
    return out


_SUMMARY_LINES = (
    ("Average Precision", "0.50:0.95", "all", "AP"), ("Average Precision", "0.50", "all", "AP50"),
    ("Average Precision", "0.75", "all", "AP75"), ("Average Precision", "0.50:0.95", "small", "APs"),
    ("Average Precision", "0.50:0.95", "medium", "APm"), ("Average Precision", "0.50:0.95", "large", "APl"),
    ("Average Recall", "0.50:0.95", "all", "AR1"), ("Average Recall", "0.50:0.95", "all", "AR10"),
    ("Average Recall", "0.50:0.95", "all", "AR100"), ("Average Recall", "0.50:0.95", "small", "ARs"),
    ("Average Recall", "0.50:0.95", "medium", "ARm"), ("Average Recall", "0.50:0.95", "large", "ARl"),
)


def format_coco_summary(stats: Mapping[str, float], prefix: str = "") -> str:
    """The 12 numbers of :func:`coco_eval` as the twelve lines the COCO API prints (``prefix`` = the key
    prefix, e.g. ``"mask_"``)."""
    lines = []
    for title, iou, area, key in _SUMMARY_LINES:
        kind = "(AP)" if title.endswith("Precision") else "(AR)"
        dets = key[2:] if key.startswith("AR") and key[2:].isdigit() else "100"
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6} | maxDets={dets:>3} ] = "
                     f"{stats[prefix + key]:0.3f}")
    return "\n".join(lines)
