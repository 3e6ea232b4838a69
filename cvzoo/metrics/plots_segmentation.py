"""Pictures of segmentation results: colour class maps, overlays, an image | truth | prediction grid,
and the per-class IoU table.

Colours come from the caller's palette (``[K, 3]`` uint8, row = class value; 255 = ignore is drawn
in ``IGNORE_COLOUR``), so these functions know nothing about dataset formats.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

IGNORE_INDEX = 255
IGNORE_COLOUR = (224, 224, 192)  # the VOC "void" colour


def colorize(class_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """``[H, W]`` class values -> ``[H, W, 3]`` uint8 colours (255 -> ``IGNORE_COLOUR``; unknown -> black)."""
    class_map = np.asarray(class_map).astype(np.int64)
    table = np.zeros((256, 3), np.uint8)
    palette = np.asarray(palette, np.uint8).reshape(-1, 3)[:255]
    table[: len(palette)] = palette
    table[IGNORE_INDEX] = IGNORE_COLOUR
    return table[np.clip(class_map, 0, 255)]


def overlay(image: np.ndarray, class_map: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour class map over ``image`` (``[H, W, 3]`` uint8); background (0) stays unblended."""
    image = np.asarray(image, np.uint8)
    if image.shape[:2] != np.asarray(class_map).shape:
        raise ValueError(f"image {list(image.shape[:2])} and class map {list(np.shape(class_map))} differ in size")
    colours = colorize(class_map, palette).astype(np.float32)
    blend = np.where((np.asarray(class_map) > 0)[..., None], (1 - alpha) * image + alpha * colours, image)
    return blend.round().clip(0, 255).astype(np.uint8)


def save_prediction_grid(
    images: Sequence[np.ndarray], targets: Sequence[np.ndarray], preds: Sequence[np.ndarray],
    palette: np.ndarray, path: str | Path, alpha: float = 0.6,
) -> Path:
    """One row per sample: image | ground-truth overlay | prediction overlay, saved as JPEG/PNG.

    Args:
        images: ``[H, W, 3]`` uint8 images.
        targets, preds: ``[H, W]`` class maps of the same sizes.
        palette: ``[K, 3]`` class colours.
        path: output file.
    """
    from PIL import Image

    if not (len(images) == len(targets) == len(preds)) or not images:
        raise ValueError(f"need as many images, targets and predictions (>0): {len(images)}, {len(targets)}, {len(preds)}")
    height = max(im.shape[0] for im in images)
    width = max(im.shape[1] for im in images)
    scale = max(1, 128 // max(height, width))  # tiny test images are enlarged to stay readable
    gap = 4
    canvas = np.full(((height * scale + gap) * len(images), (width * scale + gap) * 3, 3), 255, np.uint8)
    for row, (image, target, pred) in enumerate(zip(images, targets, preds)):
        panels = (np.asarray(image, np.uint8), overlay(image, target, palette, alpha), overlay(image, pred, palette, alpha))
        for col, panel in enumerate(panels):
            big = panel.repeat(scale, 0).repeat(scale, 1)
            top, left = row * (height * scale + gap), col * (width * scale + gap)
            canvas[top:top + big.shape[0], left:left + big.shape[1]] = big
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, **({"quality": 90} if path.suffix.lower() in (".jpg", ".jpeg") else {}))
    return path


def write_per_class_csv(per_class: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """``class,iou,dice,acc,support`` rows (one per class) as CSV; undefined values are written as ``nan``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "iou", "dice", "acc", "support"])
        for row in per_class:
            writer.writerow([row["class"], f"{row['iou']:.4f}", f"{row['dice']:.4f}", f"{row['acc']:.4f}", row["support"]])
    return path


__all__ = ["IGNORE_COLOUR", "colorize", "overlay", "save_prediction_grid", "write_per_class_csv"]
