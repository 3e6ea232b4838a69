"""Conversions between polygons, binary masks, instance label maps and boxes.

Pixel convention: pixel ``(row i, column j)`` is the unit square ``[j, j+1) x [i, i+1)``, so a mask
whose foreground spans columns ``j0..j1`` has the xyxy box ``(j0, i0, j1 + 1, i1 + 1)`` (the COCO
convention). Polygons are drawn with PIL's ``ImageDraw.polygon`` at their coordinates as given; PIL
fills every pixel whose integer corner the outline touches, so a polygon traced through the pixel
indices of a mask's boundary (what :func:`mask_to_polygons` returns) rasterises back to that mask.
Compared with pycocotools' polygon rasteriser, PIL marks about one extra pixel row along the right and
bottom edges (see docs/formats.md for the measured difference).
"""

from __future__ import annotations

import numpy as np

from cvzoo.ops.masks import rle_decode


def polygons_to_mask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise the union of polygons.

    Args:
        polygons: each ``[K, 2]`` xy (absolute pixels) or a flat ``[2K]`` list, K >= 3.
        height, width: output size.

    Returns:
        ``[H, W]`` uint8 mask with 1 inside.
    """
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (int(width), int(height)), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        points = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise ValueError(f"a polygon needs at least 3 points, got {len(points)}")
        draw.polygon([tuple(p) for p in points], fill=1, outline=1)
    return np.asarray(canvas, dtype=np.uint8)


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[np.ndarray]:
    """Outer contours of a binary mask as polygons.

    Args:
        mask: ``[H, W]`` binary mask.
        min_points: contours with fewer points (single pixels, thin lines) are dropped.

    Returns:
        list of ``[K, 2]`` float32 xy polygons through the boundary pixels' indices, largest first.
        Holes are not represented (COCO polygons cannot express them; use RLE for such masks).
    """
    import cv2

    binary = np.ascontiguousarray(np.asarray(mask).astype(np.uint8))
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [c.reshape(-1, 2).astype(np.float32) for c in contours if len(c) >= min_points]
    polygons.sort(key=lambda p: -cv2.contourArea(p))
    return polygons


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Tight xyxy box ``[4]`` float32 of a ``[H, W]`` mask (pixel-edge convention); zeros if empty."""
    ys, xs = np.nonzero(np.asarray(mask))
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """xyxy boxes ``[N, 4]`` float32 of ``[N, H, W]`` masks."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks_to_boxes expects [N, H, W], got shape {list(masks.shape)}")
    return np.stack([mask_to_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), np.float32)


def instance_map_to_masks(
    instance_map: np.ndarray, ignore: tuple[int, ...] = (0, 255)
) -> tuple[np.ndarray, np.ndarray]:
    """Split an instance-id map into one mask per id.

    Args:
        instance_map: ``[H, W]`` integer map; each non-ignored value is one instance.
        ignore: values that are not instances (VOC: 0 background, 255 border/void).

    Returns:
        ``(ids [N] int64, masks [N, H, W] uint8)`` in increasing id order.
    """
    instance_map = np.asarray(instance_map)
    if instance_map.ndim != 2:
        raise ValueError(f"instance map must be [H, W], got shape {list(instance_map.shape)}")
    ids = np.array([v for v in np.unique(instance_map) if v not in ignore], dtype=np.int64)
    masks = (instance_map[None] == ids[:, None, None]).astype(np.uint8)
    return ids, masks


def annotation_masks(image) -> np.ndarray:
    """``[N, H, W]`` uint8 instance masks of an ``ImageAnnotation``.

    Uses, per object, the first available of: ``masks``, ``rles``, ``polygons``; objects with none of
    them get their box filled (so the result always has one mask per box).
    """
    if image.masks is not None:
        return np.asarray(image.masks, dtype=np.uint8)
    height, width = int(image.height), int(image.width)
    out = np.zeros((len(image), height, width), np.uint8)
    for k in range(len(image)):
        rle = image.rles[k] if image.rles is not None else None
        polys = image.polygons[k] if image.polygons is not None else None
        if rle is not None:
            out[k] = rle_decode(rle)
        elif polys:
            out[k] = polygons_to_mask(polys, height, width)
        else:
            x0, y0, x1, y1 = np.round(image.boxes[k]).astype(int)
            out[k, max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    return out
