"""CornerNet's training targets (Law & Deng 2018, Sec. 3.2-3.3): Gaussian-penalised corner heatmaps,
sub-pixel offsets and the map positions where each object's embeddings are read."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from cvzoo.ops.heatmaps import draw_gaussian, gaussian_radius


@dataclass
class CornerTargets:
    """Targets of a batch for maps of ``H x W`` (``M`` = most objects in an image of the batch, at least 1).

    Attributes:
        tl_heatmap, br_heatmap: ``[B, C, H, W]`` in [0, 1], 1 at each object's corner pixel.
        tl_index, br_index: ``[B, M]`` int64 flat positions ``y * W + x`` of the corner pixels.
        tl_offset, br_offset: ``[B, M, 2]`` the ``(x, y)`` fractions lost by flooring to the map
            (eq. 2: ``x / n - floor(x / n)``).
        mask: ``[B, M]`` bool, True for real objects (the rest is padding).
    """

    tl_heatmap: torch.Tensor
    br_heatmap: torch.Tensor
    tl_index: torch.Tensor
    br_index: torch.Tensor
    tl_offset: torch.Tensor
    br_offset: torch.Tensor
    mask: torch.Tensor

    @property
    def num_objects(self) -> int:
        return int(self.mask.sum())


def corner_targets(targets: Sequence[dict[str, torch.Tensor]], num_classes: int, map_size: tuple[int, int],
                   stride: int, min_overlap: float = 0.3) -> CornerTargets:
    """Build :class:`CornerTargets` from canonical targets (``boxes`` xyxy input pixels, ``labels``).

    A corner at input pixel ``x`` lands on map pixel ``floor(x / stride)`` (clamped into the map); the
    Gaussian's radius comes from the box's size on the map (``gaussian_radius`` with IoU ``min_overlap``,
    0.3 in the paper), rounded down as in CornerNet's code.
    """
    height, width = map_size
    batch = len(targets)
    most = max([len(t["boxes"]) for t in targets] + [1])
    device = targets[0]["boxes"].device if batch else torch.device("cpu")
    tl_heatmap = torch.zeros(batch, num_classes, height, width, device=device)
    br_heatmap = torch.zeros_like(tl_heatmap)
    tl_index = torch.zeros(batch, most, dtype=torch.int64, device=device)
    br_index = torch.zeros_like(tl_index)
    tl_offset = torch.zeros(batch, most, 2, device=device)
    br_offset = torch.zeros_like(tl_offset)
    mask = torch.zeros(batch, most, dtype=torch.bool, device=device)
    limit = torch.tensor([width - 1, height - 1], device=device)
    for i, target in enumerate(targets):
        boxes = target["boxes"].to(device).float() / stride
        if not len(boxes):
            continue
        labels = target["labels"].tolist()
        tl, br = boxes[:, :2], boxes[:, 2:]
        tl_pixel = torch.minimum(tl.floor(), limit).clamp(min=0)
        br_pixel = torch.minimum(br.floor(), limit).clamp(min=0)
        n = len(boxes)
        tl_offset[i, :n], br_offset[i, :n] = tl - tl_pixel, br - br_pixel
        tl_pixel, br_pixel = tl_pixel.long(), br_pixel.long()
        tl_index[i, :n] = tl_pixel[:, 1] * width + tl_pixel[:, 0]
        br_index[i, :n] = br_pixel[:, 1] * width + br_pixel[:, 0]
        mask[i, :n] = True
        sizes = (br - tl).tolist()
        for (tx, ty), (bx, by), (box_w, box_h), label in zip(tl_pixel.tolist(), br_pixel.tolist(), sizes, labels):
            radius = max(0, int(gaussian_radius(math.ceil(box_h), math.ceil(box_w), min_overlap)))
            draw_gaussian(tl_heatmap[i, label], tx, ty, radius)
            draw_gaussian(br_heatmap[i, label], bx, by, radius)
    return CornerTargets(tl_heatmap, br_heatmap, tl_index, br_index, tl_offset, br_offset, mask)
