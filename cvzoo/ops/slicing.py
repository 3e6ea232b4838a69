"""Sliced inference for large images: overlapping tiles, detections shifted back and merged.

Small objects in an image much larger than the network input shrink below what the detector resolves
when the whole image is resized to the input (a 1249x1035 orthophoto at 640 px halves every tree). Slicing
(Akyon et al. 2022, "Slicing Aided Hyper Inference", SAHI) runs the detector on overlapping tiles at
their own resolution, shifts each tile's boxes by the tile's offset and merges the union, optionally with
a whole-image pass for the objects larger than a tile, by class-wise NMS: an object cut by a tile border is
found whole in the neighbouring tile (the overlap is there for it), and the better-scored copy survives.
"""

from __future__ import annotations

import math

import torch

from cvzoo.ops.nms import batched_nms


def tile_windows(height: int, width: int, tile: int, overlap: float = 0.2) -> list[tuple[int, int, int, int]]:
    """Windows ``(x0, y0, x1, y1)`` of at most ``tile`` pixels a side covering a ``height x width`` image.

    Neighbouring windows share at least ``overlap`` of a tile; the last window of a row or column ends on
    the image border (it overlaps its neighbour more rather than running off the image). An image no larger
    than a tile is one window.
    """
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap is a fraction of the tile in [0, 1), got {overlap}")
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in _starts(height, tile, overlap) for x in _starts(width, tile, overlap)]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    count = math.ceil((length - tile) / step) + 1
    # Spread the windows evenly between the two borders (the same overlap everywhere, never less than asked).
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def merge_tile_detections(
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    offsets: list[tuple[int, int]],
    iou_threshold: float = 0.5,
    max_det: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shift each part's boxes by its window offset and keep the best of overlapping same-class copies.

    Args:
        parts: per window ``(boxes [N, 4] xyxy in window pixels, scores [N], labels [N])``.
        offsets: per window its ``(x0, y0)`` in the image (``(0, 0)`` for a whole-image pass).
        iou_threshold: same-class boxes overlapping more than this are one object.
        max_det: keep at most this many, best first.

    Returns:
        ``(boxes [M, 4] xyxy image pixels, scores [M], labels [M])``, best score first.
    """
    if len(parts) != len(offsets):
        raise ValueError(f"{len(parts)} detection parts for {len(offsets)} window offsets")
    if not parts:
        return torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long)
    shifted = [boxes + boxes.new_tensor([x0, y0, x0, y0]) for (boxes, _, _), (x0, y0) in zip(parts, offsets)]
    boxes = torch.cat(shifted)
    scores = torch.cat([part[1] for part in parts])
    labels = torch.cat([part[2] for part in parts])
    keep = batched_nms(boxes, scores, labels, iou_threshold)  # sorted by decreasing score
    if max_det is not None:
        keep = keep[:max_det]
    return boxes[keep], scores[keep], labels[keep]
