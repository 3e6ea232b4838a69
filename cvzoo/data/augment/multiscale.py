"""Multi-scale training for detectors: one random input size per batch, the boxes scaled with it.

YOLOv2 (Redmon & Farhadi 2017, "Multi-Scale Training") introduced it, darknet's YOLOv3 cfg keeps it
(``random=1``) and YOLOv5's ``--multi-scale`` draws a size in 0.5-1.5 x img_size for every batch. A fully
convolutional detector then sees objects at more scales than the data holds and is less tied to one input
size. The whole batch is resized on its device after collation (cheaper than per-sample resizing in the
workers, and every image of a batch must share one shape anyway).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from cvzoo.data.augment.detect import random_multiscale_size

SCALE_RANGE = (0.5, 1.5)


def resize_batch(
    images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]], size: tuple[int, int]
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Resize a batch ``[B, C, H, W]`` to ``size = (h, w)`` (bilinear) and its xyxy pixel boxes with it.

    Boxes follow the continuous-coordinate convention of the canonical targets (pixel ``c`` covers
    ``[c, c + 1)``), which is also ``align_corners=False``'s: an image edge maps to the new edge, so a box
    scales by exactly ``w / W`` horizontally and ``h / H`` vertically.
    """
    height, width = images.shape[-2:]
    if (height, width) == tuple(size):
        return images, list(targets)
    resized = F.interpolate(images, size=tuple(size), mode="bilinear", align_corners=False)
    scale = [size[1] / width, size[0] / height] * 2
    scaled = []
    for target in targets:
        boxes = target["boxes"]
        scaled.append({**target, "boxes": boxes * boxes.new_tensor(scale)})
    return resized, scaled


def multiscale_batch(
    images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]], img_size: int, stride: int = 32,
    scale_range: tuple[float, float] = SCALE_RANGE,
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Resize a square training batch to a random side: a multiple of ``stride`` in ``scale_range`` x
    ``img_size`` (at least ``stride``), drawn uniformly among those multiples.

    The draw consumes torch's global RNG (``random_multiscale_size`` seeds from it), which the trainer's
    checkpoints save, so a resumed run replays the same sizes.
    """
    side = random_multiscale_size(img_size, scale_range, stride)
    height, width = images.shape[-2:]
    factor = side / max(height, width)
    # A non-square batch keeps its aspect ratio, the short side rounded up to the stride.
    size = (-(-round(height * factor) // stride) * stride, -(-round(width * factor) // stride) * stride)
    return resize_batch(images, targets, size)
