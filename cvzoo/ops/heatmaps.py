"""Gaussian-penalised keypoint heatmaps (CornerNet, Law & Deng 2018; CenterNet reuses them).

A keypoint detector's ground truth is not one positive pixel per object: negatives near a true keypoint
are penalised less, by an unnormalised 2-D Gaussian centred on it whose radius depends on the object's
size (``gaussian_radius``). ``draw_gaussian`` paints such a bump into a heatmap, keeping the maximum
where two objects' bumps overlap.
"""

from __future__ import annotations

import math

import torch


def gaussian_radius(height: float, width: float, min_overlap: float = 0.3) -> float:
    """Largest radius ``r`` such that corners displaced by up to ``r`` still give a box with IoU >= ``min_overlap``.

    CornerNet (Sec. 3.2) sets the radius of a ground-truth corner's Gaussian "by ensuring that a pair of
    points within the radius would generate a bounding box with at least t IoU with the ground-truth
    annotation" (t = 0.3). Both corners moved by ``r`` along both axes give three worst cases for a
    ``width x height`` box, each a quadratic in ``r`` whose smaller positive root is taken:

    1. both corners moved the same way (a shifted box of the same size):
       ``(w - r)(h - r) / (2wh - (w - r)(h - r)) = t``;
    2. both corners moved inwards (a box shrunk by ``r`` on every side): ``(w - 2r)(h - 2r) / (wh) = t``;
    3. both corners moved outwards (a box grown by ``r`` on every side): ``wh / ((w + 2r)(h + 2r)) = t``.

    The radius is the smallest of the three. (The released CornerNet code solves the same three
    quadratics but with the other root of case 1 and without dividing cases 2 and 3 by ``a``: its radii
    are larger; this function follows the rule as the paper states it.)

    Args:
        height, width: the box's size (in the heatmap's pixels).
        min_overlap: ``t``, in (0, 1).

    Returns:
        The radius in the same units (0 for an empty box).
    """
    if not 0.0 < min_overlap < 1.0:
        raise ValueError(f"gaussian_radius: min_overlap must be in (0, 1), got {min_overlap}")
    if height <= 0 or width <= 0:
        return 0.0
    t, s, area = min_overlap, height + width, height * width
    # 1: r^2 - (w + h) r + wh (1 - t) / (1 + t) = 0
    shifted = (s - math.sqrt(s * s - 4 * area * (1 - t) / (1 + t))) / 2
    # 2: 4 r^2 - 2 (w + h) r + (1 - t) wh = 0
    inside = (2 * s - math.sqrt(4 * s * s - 16 * (1 - t) * area)) / 8
    # 3: 4 t r^2 + 2 t (w + h) r - (1 - t) wh = 0
    outside = (-2 * t * s + math.sqrt(4 * t * t * s * s + 16 * t * (1 - t) * area)) / (8 * t)
    return min(shifted, inside, outside)


def gaussian_kernel(radius: int, sigma: float | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """``[2r + 1, 2r + 1]`` unnormalised Gaussian ``exp(-(x^2 + y^2) / (2 sigma^2))``, 1 at the centre.

    ``sigma`` defaults to a third of the radius, i.e. ``(2r + 1) / 6`` as in CornerNet (the diameter
    covers +-3 sigma). Values below float32 epsilon times the peak are set to 0, so the bump has a
    finite support.
    """
    if radius < 0:
        raise ValueError(f"gaussian_kernel: radius must be >= 0, got {radius}")
    sigma = (2 * radius + 1) / 6 if sigma is None else sigma
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma * sigma))
    kernel[kernel < torch.finfo(kernel.dtype).eps * kernel.max()] = 0
    return kernel


def draw_gaussian(heatmap: torch.Tensor, x: int, y: int, radius: int) -> torch.Tensor:
    """Paint a Gaussian bump of ``radius`` centred on pixel ``(x, y)`` into ``heatmap [H, W]`` in place.

    Overlapping bumps keep their element-wise maximum (two nearby objects of one class each keep a peak
    of 1). The bump is clipped at the heatmap's borders; a centre outside the map raises.

    Returns:
        ``heatmap``.
    """
    if heatmap.ndim != 2:
        raise ValueError(f"draw_gaussian: heatmap must be [H, W], got shape {tuple(heatmap.shape)}")
    height, width = heatmap.shape
    if not (0 <= x < width and 0 <= y < height):
        raise ValueError(f"draw_gaussian: centre ({x}, {y}) outside the {height}x{width} heatmap")
    radius = int(radius)
    kernel = gaussian_kernel(radius, device=heatmap.device).to(heatmap.dtype)
    left, right = min(x, radius), min(width - x, radius + 1)
    top, bottom = min(y, radius), min(height - y, radius + 1)
    region = heatmap[y - top:y + bottom, x - left:x + right]
    torch.maximum(region, kernel[radius - top:radius + bottom, radius - left:radius + right], out=region)
    return heatmap
