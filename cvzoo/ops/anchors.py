"""Anchor boxes (Faster R-CNN / RetinaNet), SSD default boxes and grid points for anchor-free heads."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.ops._checks import ShapeError

DEFAULT_SSD_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))


def _check_sizes(feature_sizes: Sequence[Sequence[int]], where: str) -> list[tuple[int, int]]:
    sizes = []
    for level, size in enumerate(feature_sizes):
        if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
            raise ShapeError(
                f"{where}: feature_sizes[{level}] must be a positive (height, width), got {size!r}"
            )
        sizes.append((int(size[0]), int(size[1])))
    return sizes


def _grid_xy(height: int, width: int, device: torch.device | None, dtype: torch.dtype) -> torch.Tensor:
    """``[H * W, 2]`` integer cell coordinates ``(x, y)`` in row-major order."""
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack((xs.reshape(-1), ys.reshape(-1)), dim=-1)


class AnchorGenerator(nn.Module):
    """Anchors of a feature pyramid (Ren et al. 2015, "Faster R-CNN"; Lin et al. 2017, FPN / RetinaNet).

    At every cell of level ``l``, one anchor per (aspect ratio, size) pair, centred on the cell's top-left
    corner shifted by ``stride`` (the torchvision / Detectron convention). For size ``s`` and ratio
    ``r = h / w`` the anchor is ``w = s / sqrt(r)``, ``h = s * sqrt(r)`` (area ``s^2``), rounded to whole
    pixels. Order: level, then cell (row-major), then ratio, then size.

    Args:
        sizes: per level, the anchor sizes in pixels, e.g. ``((32,), (64,), (128,), (256,), (512,))``.
        aspect_ratios: per level, the ratios ``h / w``, e.g. ``((0.5, 1.0, 2.0),) * 5``.
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]]) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(
                f"AnchorGenerator: sizes has {len(sizes)} levels but aspect_ratios has {len(aspect_ratios)}"
            )
        self.sizes = tuple(tuple(float(s) for s in level) for level in sizes)
        self.aspect_ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)
        for level, (level_sizes, ratios) in enumerate(zip(self.sizes, self.aspect_ratios)):
            if not level_sizes or not ratios or min(level_sizes) <= 0 or min(ratios) <= 0:
                raise ValueError(
                    f"AnchorGenerator: level {level} needs positive sizes and ratios, "
                    f"got sizes={level_sizes} aspect_ratios={ratios}"
                )

    def num_anchors_per_location(self) -> list[int]:
        """Number of anchors per cell, per level."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def cell_anchors(
        self, level: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """``[A, 4]`` xyxy anchors of one level centred on the origin."""
        sizes = torch.tensor(self.sizes[level], dtype=dtype, device=device)
        h_ratios = torch.tensor(self.aspect_ratios[level], dtype=dtype, device=device).sqrt()
        widths = (sizes[None, :] / h_ratios[:, None]).reshape(-1)
        heights = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
        return (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()

    def grid_anchors(
        self,
        feature_sizes: Sequence[Sequence[int]],
        strides: Sequence[Sequence[int]],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Anchors for feature maps of ``(height, width)`` with ``(stride_y, stride_x)`` -> ``[sum HWA, 4]`` xyxy."""
        sizes = _check_sizes(feature_sizes, "AnchorGenerator")
        if len(sizes) != len(self.sizes) or len(strides) != len(self.sizes):
            raise ShapeError(
                f"AnchorGenerator: built for {len(self.sizes)} levels, got {len(sizes)} feature sizes "
                f"and {len(strides)} strides"
            )
        all_anchors = []
        for level, ((height, width), (stride_y, stride_x)) in enumerate(zip(sizes, strides)):
            cells = _grid_xy(height, width, device, dtype)
            shifts = (cells * torch.tensor([stride_x, stride_y], device=device, dtype=dtype)).repeat(1, 2)
            base = self.cell_anchors(level, device, dtype)
            all_anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return torch.cat(all_anchors, dim=0)

    def forward(
        self,
        image_size: Sequence[int],
        feature_sizes: Sequence[Sequence[int]],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Anchors for a (padded) batch of ``image_size = (height, width)``, shared by all its images.

        Strides are ``image_size // feature_size`` per axis, as torchvision computes them. While
        ``torch.onnx.export`` traces a model the sizes are 0-d tensors, and the anchors are computed from them
        in the graph (:meth:`traced_anchors`), so that the exported model takes images of any size.

        Returns:
            ``[sum_l H_l * W_l * A_l, 4]`` xyxy anchors in pixels.
        """
        if torch.onnx.is_in_onnx_export():
            return self.traced_anchors(image_size, feature_sizes, device, dtype)
        sizes = _check_sizes(feature_sizes, "AnchorGenerator")
        strides = [(int(image_size[0]) // h, int(image_size[1]) // w) for h, w in sizes]
        return self.grid_anchors(sizes, strides, device, dtype)

    def traced_anchors(
        self,
        image_size: Sequence[int | torch.Tensor],
        feature_sizes: Sequence[Sequence[int | torch.Tensor]],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """:meth:`forward` with the sizes as traced 0-d tensors (no ``int()``, which would freeze them).

        The same values: integer strides and cell indices, exact in floating point.
        """
        if len(feature_sizes) != len(self.sizes):
            raise ShapeError(f"AnchorGenerator: built for {len(self.sizes)} levels, got {len(feature_sizes)} feature sizes")
        all_anchors = []
        for level, (height, width) in enumerate(feature_sizes):
            stride = torch.stack([image_size[1] // width, image_size[0] // height])
            cells = _grid_xy(height, width, device, dtype)  # arange takes the traced sizes
            shifts = (cells * stride.to(device=device, dtype=dtype)).repeat(1, 2)
            base = self.cell_anchors(level, device, dtype)
            all_anchors.append((shifts[:, None, :] + base[None, :, :]).reshape(-1, 4))
        return torch.cat(all_anchors, dim=0)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, aspect_ratios={self.aspect_ratios}"


def flatten_anchor_maps(maps: Sequence[torch.Tensor], values_per_anchor: int) -> torch.Tensor:
    """Per-level head maps ``[B, A * V, H, W]`` -> ``[B, sum_l H_l W_l A, V]``, rows in the order of
    :class:`AnchorGenerator`'s anchors (level, cell row-major, anchor); ``V`` values per anchor (4 box
    deltas, ``K`` class logits, 1 objectness). The RPN, RetinaNet and FCOS heads all predict this layout."""
    flat = []
    for level, m in enumerate(maps):
        if m.ndim != 4 or m.shape[1] % values_per_anchor:
            raise ShapeError(f"flatten_anchor_maps: maps[{level}] must be [B, A * {values_per_anchor}, H, W], "
                             f"got {list(m.shape)}")
        batch, channels, height, width = m.shape
        m = m.view(batch, channels // values_per_anchor, values_per_anchor, height, width)
        flat.append(m.permute(0, 3, 4, 1, 2).reshape(batch, -1, values_per_anchor))
    return torch.cat(flat, dim=1)


def ssd_scales(num_levels: int, min_ratio: float = 0.2, max_ratio: float = 0.9) -> list[float]:
    """SSD box scales ``s_k = s_min + (s_max - s_min)(k - 1)/(m - 1)``, k = 1..m, plus ``s_{m+1} = 1``."""
    if num_levels < 1:
        raise ValueError(f"ssd_scales: num_levels must be >= 1, got {num_levels}")
    if num_levels == 1:
        return [min_ratio, max_ratio]
    # range * k / (m - 1), in this order (torchvision's DefaultBoxGenerator): the same float64 rounding, so
    # that SSD checkpoints see bit-identical default boxes.
    spread = max_ratio - min_ratio
    return [min_ratio + spread * k / (num_levels - 1.0) for k in range(num_levels)] + [1.0]


def ssd_default_boxes(
    feature_sizes: Sequence[Sequence[int]],
    min_ratio: float = 0.2,
    max_ratio: float = 0.9,
    aspect_ratios: Sequence[Sequence[float]] = DEFAULT_SSD_ASPECT_RATIOS,
    scales: Sequence[float] | None = None,
    steps: Sequence[int] | None = None,
    image_size: Sequence[int] | None = None,
    clip: bool = True,
) -> torch.Tensor:
    """SSD default boxes (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"), normalised cxcywh.

    Level k (of m) uses scale ``s_k`` (see :func:`ssd_scales`); per cell it places a ``s_k x s_k`` box, the
    extra ratio-1 box of side ``sqrt(s_k * s_{k+1})``, and for each ratio ``a`` the pair
    ``(s_k sqrt(a), s_k / sqrt(a))`` and its transpose. Centres are ``(j + 0.5) / f_k``. Order: level,
    cell (row-major), box.

    Args:
        feature_sizes: per level ``(height, width)`` of the feature map.
        min_ratio, max_ratio: ``s_min`` and ``s_max``; ignored when ``scales`` is given.
        aspect_ratios: per level, the ratios other than 1 (each adds two boxes).
        scales: explicit ``m + 1`` scales (e.g. torchvision's SSD300 ``[0.07, 0.15, ..., 1.05]``).
        steps: per level, the pixel step between centres; centres become ``(j + 0.5) * step / image``
            (needs ``image_size``), as in the original Caffe SSD300.
        image_size: ``(height, width)``, only needed with ``steps``.
        clip: clamp widths and heights to ``[0, 1]``.

    Returns:
        ``[sum_k H_k * W_k * (2 + 2 * len(aspect_ratios[k])), 4]`` boxes, cxcywh, relative to the image.
    """
    sizes = _check_sizes(feature_sizes, "ssd_default_boxes")
    if len(aspect_ratios) != len(sizes):
        raise ShapeError(
            f"ssd_default_boxes: {len(sizes)} feature sizes but {len(aspect_ratios)} aspect-ratio lists"
        )
    if scales is None:
        scales = ssd_scales(len(sizes), min_ratio, max_ratio)
    if len(scales) != len(sizes) + 1:
        raise ShapeError(f"ssd_default_boxes: need {len(sizes) + 1} scales, got {len(scales)}")
    if steps is not None and (len(steps) != len(sizes) or image_size is None):
        raise ShapeError("ssd_default_boxes: steps needs one value per level and an image_size")

    all_boxes = []
    for k, (height, width) in enumerate(sizes):
        s_k = scales[k]
        wh = [(s_k, s_k), (math.sqrt(s_k * scales[k + 1]),) * 2]
        for ratio in aspect_ratios[k]:
            root = math.sqrt(ratio)
            wh += [(s_k * root, s_k / root), (s_k / root, s_k * root)]
        wh_t = torch.tensor(wh, dtype=torch.float32)
        if clip:
            wh_t = wh_t.clamp(0, 1)
        if steps is not None:
            cells_y, cells_x = image_size[0] / steps[k], image_size[1] / steps[k]
        else:
            cells_y, cells_x = height, width
        centres = (_grid_xy(height, width, None, torch.float32) + 0.5) / torch.tensor([cells_x, cells_y])
        boxes = torch.cat(
            (centres[:, None, :].expand(-1, len(wh), 2), wh_t[None].expand(height * width, -1, 2)), dim=-1
        )
        all_boxes.append(boxes.reshape(-1, 4))
    return torch.cat(all_boxes, dim=0)


def make_grid_points(
    feature_sizes: Sequence[Sequence[int]],
    strides: Sequence[int],
    offset: float = 0.5,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of every level for anchor-free heads (FCOS, YOLOX, YOLOv8).

    Args:
        feature_sizes: per level ``(height, width)``.
        strides: per level, the stride in pixels.
        offset: position inside the cell, 0.5 = centre.

    Returns:
        ``(points, point_strides)``: ``[N, 2]`` ``(x, y)`` in pixels, ``(j + offset) * stride``
        (divide by ``point_strides[:, None]`` for grid units, as YOLOv8 uses), and ``[N]`` strides.
    """
    sizes = _check_sizes(feature_sizes, "make_grid_points")
    if len(strides) != len(sizes):
        raise ShapeError(f"make_grid_points: {len(sizes)} feature sizes but {len(strides)} strides")
    points, point_strides = [], []
    for (height, width), stride in zip(sizes, strides):
        points.append((_grid_xy(height, width, device, dtype) + offset) * stride)
        point_strides.append(torch.full((height * width,), float(stride), device=device, dtype=dtype))
    return torch.cat(points, dim=0), torch.cat(point_strides, dim=0)
