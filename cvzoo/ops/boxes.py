"""Box formats, areas, clipping and the IoU family (IoU, GIoU, DIoU, CIoU).

Formats (all ``[..., 4]``):
    ``xyxy``   corners ``(x1, y1, x2, y2)`` - the canonical format of cvzoo.
    ``xywh``   top-left corner and size ``(x1, y1, w, h)`` - COCO json.
    ``cxcywh`` centre and size ``(cx, cy, w, h)`` - YOLO labels, DETR, SSD default boxes.

Every IoU variant exists twice: pairwise (``[N, 4] x [M, 4] -> [N, M]``, equal to the functions of the
same name in ``torchvision.ops``) and elementwise (``[..., 4] x [..., 4] -> [...]``, the form a box
regression loss needs, with ``eps`` added to the denominators as ``torchvision.ops.*_box_iou_loss`` does).
"""

from __future__ import annotations

import math

import torch

from cvzoo.ops._checks import ShapeError, check_choice, check_last_dim, check_ndim

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


def _upcast(t: torch.Tensor) -> torch.Tensor:
    # Products of coordinates overflow float16 (65504) for boxes larger than ~256 px; work in float32.
    if t.is_floating_point():
        return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
    return t.float()


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert boxes between the ``xyxy``, ``xywh`` and ``cxcywh`` formats.

    Args:
        boxes: ``[..., 4]`` boxes in ``in_fmt``.
        in_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.
        out_fmt: one of ``"xyxy"``, ``"xywh"``, ``"cxcywh"``.

    Returns:
        ``[..., 4]`` boxes in ``out_fmt`` (a new tensor, same dtype).
    """
    check_last_dim(boxes, 4, "boxes", "box_convert")
    check_choice(in_fmt, BOX_FORMATS, "in_fmt", "box_convert")
    check_choice(out_fmt, BOX_FORMATS, "out_fmt", "box_convert")
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    # Go through xyxy: two small conversions instead of six.
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        return torch.stack((a, b, c - a, d - b), dim=-1)
    if out_fmt == "cxcywh":
        return torch.stack(((a + c) * 0.5, (b + d) * 0.5, c - a, d - b), dim=-1)
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``[..., 4]`` xyxy boxes -> ``[...]``; inverted (x2 < x1 or y2 < y1) boxes count as 0."""
    check_last_dim(boxes, 4, "boxes", "box_area")
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int] | tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Clip ``[..., 4]`` xyxy boxes to an image of ``image_size = (height, width)`` pixels.

    The sides may be 0-d tensors (an image's traced size while ``torch.onnx.export`` traces a model, which
    must stay in the graph instead of becoming constants).
    """
    check_last_dim(boxes, 4, "boxes", "clip_boxes")
    if len(image_size) != 2:
        raise ShapeError(f"clip_boxes: image_size must be (height, width), got {image_size!r}")
    height, width = image_size
    if isinstance(height, torch.Tensor) and isinstance(width, torch.Tensor):
        # clamp takes numbers or tensors, not a mix: max / min with tensor bounds give the same values.
        zero = boxes.new_zeros(())
        x = torch.minimum(torch.maximum(boxes[..., 0::2], zero), width.to(boxes))
        y = torch.minimum(torch.maximum(boxes[..., 1::2], zero), height.to(boxes))
        return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x[..., 0], y[..., 0], x[..., 1], y[..., 1]), dim=-1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of ``[N, 4]`` xyxy boxes whose width and height are both ``>= min_size`` -> ``[K]`` int64."""
    check_ndim(boxes, 2, "boxes", "remove_small_boxes", "[N, 4]")
    check_last_dim(boxes, 4, "boxes", "remove_small_boxes")
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


def valid_boxes_mask(boxes: torch.Tensor) -> torch.Tensor:
    """``[...]`` bool: the xyxy box is finite and has strictly positive width and height."""
    check_last_dim(boxes, 4, "boxes", "valid_boxes_mask")
    finite = torch.isfinite(boxes).all(dim=-1)
    return finite & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])


def _divide(num: torch.Tensor, den: torch.Tensor, eps: float) -> torch.Tensor:
    # eps > 0: the loss convention (a small bias, smooth gradients). eps == 0: exact division as in
    # torchvision's pairwise functions, but 0/0 (two empty boxes) gives 0 instead of NaN.
    if eps > 0:
        return num / (den + eps)
    return num / den.clamp(min=torch.finfo(den.dtype).tiny)


def _iou_terms(
    boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """IoU, union and the enclosing box's ``[..., 2]`` size for broadcastable xyxy boxes."""
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    area1 = (boxes1[..., 2] - boxes1[..., 0]) * (boxes1[..., 3] - boxes1[..., 1])
    area2 = (boxes2[..., 2] - boxes2[..., 0]) * (boxes2[..., 3] - boxes2[..., 1])
    top_left = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    bottom_right = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    inter_wh = (bottom_right - top_left).clamp(min=0)
    inter = inter_wh[..., 0] * inter_wh[..., 1]
    union = area1 + area2 - inter
    iou = _divide(inter, union, eps)
    enclosing_wh = (
        torch.maximum(boxes1[..., 2:], boxes2[..., 2:]) - torch.minimum(boxes1[..., :2], boxes2[..., :2])
    ).clamp(min=0)
    return iou, union, enclosing_wh


def _giou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float) -> torch.Tensor:
    # Rezatofighi et al. 2019: GIoU = IoU - |C \ (A u B)| / |C|, C the smallest enclosing box.
    iou, union, enclosing_wh = _iou_terms(boxes1, boxes2, eps)
    enclosing_area = enclosing_wh[..., 0] * enclosing_wh[..., 1]
    return iou - _divide(enclosing_area - union, enclosing_area, eps)


def _diou_and_iou(
    boxes1: torch.Tensor, boxes2: torch.Tensor, iou_eps: float, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    # Zheng et al. 2020: DIoU = IoU - rho^2(b, b_gt) / c^2, rho the centre distance, c the enclosing diagonal.
    iou, _, enclosing_wh = _iou_terms(boxes1, boxes2, iou_eps)
    diagonal_sq = enclosing_wh[..., 0] ** 2 + enclosing_wh[..., 1] ** 2 + eps
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    centre_delta = (boxes1[..., :2] + boxes1[..., 2:]) * 0.5 - (boxes2[..., :2] + boxes2[..., 2:]) * 0.5
    centre_dist_sq = centre_delta[..., 0] ** 2 + centre_delta[..., 1] ** 2
    return iou - centre_dist_sq / diagonal_sq, iou


def _ciou(boxes1: torch.Tensor, boxes2: torch.Tensor, iou_eps: float, eps: float) -> torch.Tensor:
    # Zheng et al. 2020: CIoU = DIoU - alpha * v, v = 4/pi^2 (atan(w_gt/h_gt) - atan(w/h))^2 measures the
    # aspect-ratio mismatch; alpha = v / (1 - IoU + v) is a trade-off weight, held constant in the
    # backward pass (as in the paper's reference code and torchvision).
    diou, iou = _diou_and_iou(boxes1, boxes2, iou_eps, eps)
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    w1, h1 = boxes1[..., 2] - boxes1[..., 0], boxes1[..., 3] - boxes1[..., 1]
    w2, h2 = boxes2[..., 2] - boxes2[..., 0], boxes2[..., 3] - boxes2[..., 1]
    v = (4 / math.pi**2) * (torch.atan(w1 / h1) - torch.atan(w2 / h2)) ** 2
    with torch.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def _pairwise(boxes1: torch.Tensor, boxes2: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_last_dim(boxes1, 4, "boxes1", where)
    check_last_dim(boxes2, 4, "boxes2", where)
    if boxes1.ndim < 2 or boxes2.ndim < 2:
        raise ShapeError(
            f"{where}: expected boxes1 [..., N, 4] and boxes2 [..., M, 4], "
            f"got {list(boxes1.shape)} and {list(boxes2.shape)}"
        )
    return boxes1.unsqueeze(-2), boxes2.unsqueeze(-3)


def _elementwise(boxes1: torch.Tensor, boxes2: torch.Tensor, where: str) -> None:
    check_last_dim(boxes1, 4, "boxes1", where)
    check_last_dim(boxes2, 4, "boxes2", where)
    try:
        torch.broadcast_shapes(boxes1.shape, boxes2.shape)
    except RuntimeError:
        raise ShapeError(
            f"{where}: boxes1 {list(boxes1.shape)} and boxes2 {list(boxes2.shape)} do not broadcast"
        ) from None


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes ``[..., N, 4]`` and ``[..., M, 4]`` -> ``[..., N, M]``."""
    a, b = _pairwise(boxes1, boxes2, "box_iou")
    return _iou_terms(a, b, 0.0)[0]


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise GIoU (in ``[-1, 1]``) of xyxy boxes ``[..., N, 4]`` and ``[..., M, 4]`` -> ``[..., N, M]``."""
    a, b = _pairwise(boxes1, boxes2, "generalized_box_iou")
    return _giou(a, b, 0.0)


def distance_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise DIoU of xyxy boxes ``[..., N, 4]`` and ``[..., M, 4]`` -> ``[..., N, M]``."""
    a, b = _pairwise(boxes1, boxes2, "distance_box_iou")
    return _diou_and_iou(a, b, 0.0, eps)[0]


def complete_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Pairwise CIoU of xyxy boxes ``[..., N, 4]`` and ``[..., M, 4]`` -> ``[..., N, M]``."""
    a, b = _pairwise(boxes1, boxes2, "complete_box_iou")
    return _ciou(a, b, 0.0, eps)


def box_iou_elementwise(boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of matching xyxy boxes, ``[..., 4]`` and ``[..., 4]`` (broadcast) -> ``[...]``."""
    _elementwise(boxes1, boxes2, "box_iou_elementwise")
    return _iou_terms(boxes1, boxes2, eps)[0]


def generalized_box_iou_elementwise(
    boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """GIoU of matching xyxy boxes, ``[..., 4]`` and ``[..., 4]`` (broadcast) -> ``[...]``."""
    _elementwise(boxes1, boxes2, "generalized_box_iou_elementwise")
    return _giou(boxes1, boxes2, eps)


def distance_box_iou_elementwise(
    boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """DIoU of matching xyxy boxes, ``[..., 4]`` and ``[..., 4]`` (broadcast) -> ``[...]``."""
    _elementwise(boxes1, boxes2, "distance_box_iou_elementwise")
    return _diou_and_iou(boxes1, boxes2, eps, eps)[0]


def complete_box_iou_elementwise(
    boxes1: torch.Tensor, boxes2: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """CIoU of matching xyxy boxes, ``[..., 4]`` and ``[..., 4]`` (broadcast) -> ``[...]``.

    ``boxes1`` are the predictions and ``boxes2`` the targets; CIoU is symmetric except that the trade-off
    weight alpha carries no gradient.
    """
    _elementwise(boxes1, boxes2, "complete_box_iou_elementwise")
    return _ciou(boxes1, boxes2, eps, eps)
