"""IoU of numpy ``xyxy`` boxes in float64 for the metrics.

The models' IoU family is ``cvzoo.ops.boxes`` (torch: any device, autograd). The metrics keep this
small NumPy copy on purpose: evaluation reproduces the reference arithmetic exactly in float64,
including the PASCAL VOC devkit's "+1" pixel convention (``pixel_offset``), and ``import cvzoo.metrics``
stays free of torch (the COCO/VOC evaluators run without it). The COCO matcher has its own IoU as well
(``cvzoo.metrics.coco_matching``), reproducing pycocotools' ``maskApi`` operation by operation.
"""

from __future__ import annotations

import numpy as np


def iou_pairs_xyxy(boxes_a: np.ndarray, boxes_b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """IoU of aligned box pairs.

    The VOC devkit treats coordinates as inclusive pixel indices, so a box spans
    ``x2 - x1 + 1`` pixels; ``pixel_offset=1.0`` reproduces that, ``0.0`` is the continuous form.

    Args:
        boxes_a: ``[P, 4]`` boxes ``xyxy``.
        boxes_b: ``[P, 4]`` boxes ``xyxy``.
        pixel_offset: added to every width and height.

    Returns:
        ``[P]`` float64 IoU.
    """
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    iw = np.maximum(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + pixel_offset, 0.0)
    ih = np.maximum(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + pixel_offset, 0.0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + pixel_offset) * (a[:, 3] - a[:, 1] + pixel_offset)
    area_b = (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)
