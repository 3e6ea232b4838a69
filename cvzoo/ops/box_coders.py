"""Box parameterisations: R-CNN deltas, SSD variances, YOLO grid offsets and FCOS/YOLOv8 distances."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from cvzoo.ops._checks import check_last_dim


def _centre_size(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    widths = boxes[..., 2] - boxes[..., 0]
    heights = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * widths, boxes[..., 1] + 0.5 * heights, widths, heights


class DeltaBoxCoder:
    """The R-CNN box parameterisation (Girshick et al. 2014, appendix C; Ren et al. 2015, eq. 2).

    ``t_x = w_x (x - x_a) / w_a``, ``t_y = w_y (y - y_a) / h_a``, ``t_w = w_w log(w / w_a)``,
    ``t_h = w_h log(h / h_a)`` with (x, y) the box centre and subscript a the anchor. The weights
    ``(10, 10, 5, 5)`` (Fast R-CNN heads, SSD) rescale the targets to roughly unit variance. On decoding,
    ``t_w, t_h`` are clamped at ``clamp`` so that ``exp`` cannot overflow on a wild prediction.

    Args:
        weights: ``(w_x, w_y, w_w, w_h)``.
        clamp: upper bound of the decoded log-size deltas (default ``log(1000 / 16)``, as in Detectron).
    """

    def __init__(
        self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clamp: float = math.log(1000.0 / 16)
    ) -> None:
        if len(weights) != 4:
            raise ValueError(f"DeltaBoxCoder: weights must have 4 values, got {tuple(weights)}")
        self.weights = tuple(float(w) for w in weights)
        self.clamp = float(clamp)

    def encode(self, boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Deltas that move ``anchors`` onto ``boxes``.

        Args:
            boxes: ``[..., 4]`` xyxy target boxes.
            anchors: ``[..., 4]`` xyxy anchors (or proposals), broadcastable with ``boxes``.

        Returns:
            ``[..., 4]`` deltas ``(t_x, t_y, t_w, t_h)``.
        """
        check_last_dim(boxes, 4, "boxes", "DeltaBoxCoder.encode")
        check_last_dim(anchors, 4, "anchors", "DeltaBoxCoder.encode")
        wx, wy, ww, wh = self.weights
        ax, ay, aw, ah = _centre_size(anchors)
        gx, gy, gw, gh = _centre_size(boxes)
        return torch.stack(
            (wx * (gx - ax) / aw, wy * (gy - ay) / ah, ww * torch.log(gw / aw), wh * torch.log(gh / ah)),
            dim=-1,
        )

    def decode(self, deltas: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Apply ``[..., 4]`` deltas to ``[..., 4]`` xyxy anchors -> ``[..., 4]`` xyxy boxes."""
        check_last_dim(deltas, 4, "deltas", "DeltaBoxCoder.decode")
        check_last_dim(anchors, 4, "anchors", "DeltaBoxCoder.decode")
        wx, wy, ww, wh = self.weights
        anchors = anchors.to(deltas.dtype)
        ax, ay, aw, ah = _centre_size(anchors)
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = (deltas[..., 2] / ww).clamp(max=self.clamp)
        dh = (deltas[..., 3] / wh).clamp(max=self.clamp)
        cx, cy = dx * aw + ax, dy * ah + ay
        half_w, half_h = 0.5 * torch.exp(dw) * aw, 0.5 * torch.exp(dh) * ah
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weights={self.weights}, clamp={self.clamp:.4f})"


class SSDBoxCoder(DeltaBoxCoder):
    """SSD's encoding (Liu et al. 2016): R-CNN deltas divided by the "variances" ``(0.1, 0.2)``.

    ``t_xy = (g_xy - d_xy) / (v_0 d_wh)``, ``t_wh = log(g_wh / d_wh) / v_1``, i.e. a DeltaBoxCoder with
    weights ``(1/v_0, 1/v_0, 1/v_1, 1/v_1)`` = ``(10, 10, 5, 5)``. Boxes and default boxes are xyxy
    (convert SSD's normalised cxcywh default boxes with ``box_convert``).
    """

    def __init__(self, variances: Sequence[float] = (0.1, 0.2), clamp: float = math.log(1000.0 / 16)) -> None:
        if len(variances) != 2 or min(variances) <= 0:
            raise ValueError(f"SSDBoxCoder: variances must be two positive numbers, got {tuple(variances)}")
        self.variances = (float(variances[0]), float(variances[1]))
        v_xy, v_wh = self.variances
        super().__init__((1 / v_xy, 1 / v_xy, 1 / v_wh, 1 / v_wh), clamp)


def yolo_grid(
    height: int, width: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``[H, W, 2]`` cell indices ``(x, y)``, the ``grid`` argument of the YOLO decoders."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs, ys), dim=-1)


def _check_yolo(raw: torch.Tensor, grid: torch.Tensor, anchors: torch.Tensor, where: str) -> None:
    check_last_dim(raw, 4, "raw", where)
    check_last_dim(grid, 2, "grid", where)
    check_last_dim(anchors, 2, "anchors", where)


def yolo_decode_v3(
    raw: torch.Tensor, grid: torch.Tensor, anchors: torch.Tensor, stride: float
) -> torch.Tensor:
    """YOLOv2/v3 decoding (Redmon & Farhadi 2017/2018): ``b_xy = (sigmoid(t_xy) + c_xy) * stride``,
    ``b_wh = p_wh * exp(t_wh)``.

    Args:
        raw: ``[..., 4]`` raw outputs ``(t_x, t_y, t_w, t_h)``, e.g. ``[B, A, H, W, 4]``.
        grid: ``[..., 2]`` cell indices ``(c_x, c_y)`` broadcastable with ``raw`` (e.g. ``[1, 1, H, W, 2]``).
        anchors: ``[..., 2]`` anchor (prior) sizes ``(p_w, p_h)`` in pixels (e.g. ``[1, A, 1, 1, 2]``).
        stride: pixels per cell.

    Returns:
        ``[..., 4]`` cxcywh boxes in pixels.
    """
    _check_yolo(raw, grid, anchors, "yolo_decode_v3")
    xy = (torch.sigmoid(raw[..., :2]) + grid) * stride
    wh = torch.exp(raw[..., 2:]) * anchors
    return torch.cat((xy, wh), dim=-1)


def yolo_decode_v5(
    raw: torch.Tensor, grid: torch.Tensor, anchors: torch.Tensor, stride: float
) -> torch.Tensor:
    """YOLOv4/v5 grid-sensitive decoding: ``b_xy = (2 sigmoid(t_xy) - 0.5 + c_xy) * stride``,
    ``b_wh = (2 sigmoid(t_wh))^2 * p_wh``.

    The centre can reach the cell borders (and half a cell beyond, matching the neighbour-cell targets
    of :func:`yolo_v5_build_targets`); the bounded size (at most 4x the anchor) avoids the ``exp`` blow-ups of
    v3. Arguments and result as in :func:`yolo_decode_v3`.
    """
    _check_yolo(raw, grid, anchors, "yolo_decode_v5")
    xy = (2 * torch.sigmoid(raw[..., :2]) - 0.5 + grid) * stride
    wh = (2 * torch.sigmoid(raw[..., 2:])) ** 2 * anchors
    return torch.cat((xy, wh), dim=-1)


def dist2bbox(distance: torch.Tensor, points: torch.Tensor, xywh: bool = False) -> torch.Tensor:
    """Boxes from distances ``(l, t, r, b)`` to the four sides (FCOS, Tian et al. 2019; YOLOv8).

    Args:
        distance: ``[..., 4]`` non-negative distances ``(left, top, right, bottom)``.
        points: ``[..., 2]`` points ``(x, y)`` broadcastable with ``distance``, in the same unit.
        xywh: return cxcywh instead of xyxy.

    Returns:
        ``[..., 4]`` boxes, xyxy (or cxcywh when ``xywh``).
    """
    check_last_dim(distance, 4, "distance", "dist2bbox")
    check_last_dim(points, 2, "points", "dist2bbox")
    top_left = points - distance[..., :2]
    bottom_right = points + distance[..., 2:]
    if xywh:
        return torch.cat(((top_left + bottom_right) * 0.5, bottom_right - top_left), dim=-1)
    return torch.cat((top_left, bottom_right), dim=-1)


def bbox2dist(points: torch.Tensor, boxes: torch.Tensor, reg_max: float | None = None) -> torch.Tensor:
    """Distances ``(l, t, r, b)`` from points to the sides of xyxy boxes (inverse of :func:`dist2bbox`).

    Args:
        points: ``[..., 2]`` ``(x, y)``.
        boxes: ``[..., 4]`` xyxy, broadcastable with ``points``.
        reg_max: when given, clamp to ``[0, reg_max - 0.01]`` so the value falls strictly inside the
            ``reg_max + 1`` bins of a distribution-focal-loss head (YOLOv8 with 16 bins passes 15).

    Returns:
        ``[..., 4]`` distances.
    """
    check_last_dim(points, 2, "points", "bbox2dist")
    check_last_dim(boxes, 4, "boxes", "bbox2dist")
    distance = torch.cat((points - boxes[..., :2], boxes[..., 2:] - points), dim=-1)
    if reg_max is not None:
        if reg_max <= 0:
            raise ValueError(f"bbox2dist: reg_max must be > 0, got {reg_max}")
        distance = distance.clamp(0, reg_max - 0.01)
    return distance
