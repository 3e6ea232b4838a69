"""The mask side of COCO ``segm`` evaluation: segmentations to RLE masks, and their pair IoU.

What differs from box evaluation is only how a pair's IoU is computed and where the masks come
from; :mod:`cvzoo.metrics.coco` loads the rest and :mod:`cvzoo.metrics.coco_matching` matches as for
boxes. The conventions of the reference (``COCO.loadRes``, ``COCO.annToRLE`` and ``COCOeval`` with
``iouType="segm"``):

* a ground truth's ``segmentation`` (polygons, uncompressed or compressed RLE) becomes an RLE with
  its image's ``height`` and ``width``; its ``area`` field, not the mask area, sets the area range;
* results are read the way ``loadRes`` reads them: when the *first* result has a non-empty
  ``bbox`` (as detectron-style outputs do) every result is treated as a box result, its area is
  ``w * h`` of the box and a result without ``segmentation`` is scored with its box as a polygon;
  otherwise the area is the mask area;
* mask IoU as ``pycocotools.mask.iou`` (crowd regions: intersection / detection area).

Unlike the reference, which silently scores IoU -1 there, a mask whose size differs from its
image's is an error, and so is a corrupt RLE (naming the annotation id or result index).

This module imports :mod:`cvzoo.ops.masks` (and with it torch), so ``cvzoo.metrics.coco`` imports it
only when ``iou_type="segm"`` is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cvzoo.metrics.coco_matching import DetectionArrays, GroundTruthArrays, PairIoU
from cvzoo.ops.masks import MaskFormatError, RleBatch, rle_iou_pairs


def image_sizes(images: Sequence[Mapping[str, Any]], image_ids: np.ndarray) -> np.ndarray:
    """``[I, 2]`` int64 ``(height, width)`` of the images in sorted-id order, -1 where not given."""
    def size(value: Any) -> int:
        return int(value) if isinstance(value, (int, float, np.integer, np.floating)) and value >= 0 else -1

    ids = np.asarray([img["id"] for img in images])
    sizes = np.array([[size(img.get("height")), size(img.get("width"))] for img in images], dtype=np.int64)
    out = np.full((image_ids.size, 2), -1, dtype=np.int64)
    if ids.size:
        out[np.searchsorted(image_ids, ids)] = sizes.reshape(-1, 2)
    return out


def segmentation_masks(
    segmentations: Sequence[Any], image_index: np.ndarray, sizes: np.ndarray, names: Sequence[str]
) -> RleBatch:
    """RLE masks of ``segmentation`` fields, checked against their image sizes.

    Args:
        segmentations: one per item, as in COCO annotations.
        image_index: ``[N]`` image of each item (rows of ``sizes``).
        sizes: ``[I, 2]`` image sizes from :func:`image_sizes`.
        names: how to name item ``i`` in an error (e.g. ``"ground-truth annotation id 17"``).

    Raises:
        ValueError: a :class:`~cvzoo.ops.masks.MaskFormatError` naming the item.
    """
    hw = sizes[image_index].reshape(-1, 2)
    try:
        masks = RleBatch.from_segmentations(segmentations, hw[:, 0], hw[:, 1])
    except MaskFormatError as err:
        raise MaskFormatError(f"{names[err.index]}: {err}", err.index) from None
    known = (hw >= 0).all(axis=1)
    wrong = known & ((masks.heights != hw[:, 0]) | (masks.widths != hw[:, 1]))
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise MaskFormatError(
            f"{names[i]}: segmentation size [{masks.heights[i]}, {masks.widths[i]}] differs from its image's "
            f"[{hw[i, 0]}, {hw[i, 1]}]", i)
    return masks


class _Names(Sequence[str]):
    """``names[i]`` built on demand (only an error needs one)."""

    def __init__(self, template: str, values: Sequence[Any]) -> None:
        self._template, self._values = template, values

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i):  # type: ignore[override]
        return self._template.format(self._values[i])


def ground_truth_masks(
    annotations: Sequence[Mapping[str, Any]], rows: np.ndarray, image_index: np.ndarray, sizes: np.ndarray, where: str
) -> RleBatch:
    """Masks of the kept ground-truth annotations ``annotations[rows]`` (errors name the annotation id)."""
    kept = [annotations[i] for i in rows.tolist()]
    missing = [a.get("id") for a in kept if "segmentation" not in a]
    if missing:
        raise MaskFormatError(f"{where}: annotation id {missing[0]!r} has no 'segmentation' (needed for segm)")
    names = _Names(where + ": annotation id {}", [a["id"] for a in kept])
    return segmentation_masks([a["segmentation"] for a in kept], image_index, sizes, names)


def result_masks(
    records: Sequence[Mapping[str, Any]], rows: np.ndarray, image_index: np.ndarray, sizes: np.ndarray,
    boxes: np.ndarray | None, where: str,
) -> RleBatch:
    """Masks of the kept results ``records[rows]`` (errors name the result's position).

    Args:
        boxes: ``[N, 4]`` boxes of the kept results when the results are box results (``loadRes``
            then gives a result without ``segmentation`` its box as polygon), else None.
    """
    segs = []
    for j, i in enumerate(rows.tolist()):
        seg = records[i].get("segmentation")
        if seg is None:
            if boxes is None:
                raise MaskFormatError(f"{where}[{i}] has no 'segmentation' (needed for segm)")
            x, y, w, h = boxes[j].tolist()
            seg = [[x, y, x, y + h, x + w, y + h, x + w, y]]
        segs.append(seg)
    names = _Names(where + "[{}]", rows.tolist())
    return segmentation_masks(segs, image_index, sizes, names)


def first_result_has_box(records: Sequence[Mapping[str, Any]]) -> bool:
    """Whether ``loadRes`` would read these results as box results (its test of the first one)."""
    if not records:
        return False
    box = records[0].get("bbox")
    return box is not None and not (isinstance(box, (list, tuple)) and len(box) == 0)


def mask_pair_iou(gt: GroundTruthArrays, dt: DetectionArrays) -> PairIoU:
    """The ``pair_iou`` of :func:`~cvzoo.metrics.coco_matching.match_detections` for masks."""
    if gt.masks is None or dt.masks is None:
        raise ValueError("iou_type='segm' needs masks on both the ground truth and the detections")
    gt_masks, dt_masks = gt.masks, dt.masks

    def pair_iou(det_rows: np.ndarray, gt_rows: np.ndarray) -> np.ndarray:
        # Most detections meet no ground truth of their image and category: the runs and boxes that
        # the IoU needs are built only for those that do.
        used, det_pos = np.unique(det_rows, return_inverse=True)
        return rle_iou_pairs(dt_masks.take(used), det_pos, gt_masks, gt_rows, gt.iscrowd[gt_rows])

    return pair_iou
