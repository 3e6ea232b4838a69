"""Augmentations applied to a whole batch of normalised images ``[N, C, H, W]`` at once, each image with
its own random parameters: one ``grid_sample`` (or one pooling) for the batch instead of a per-sample
transform in the data loader. The metric-learning task uses them on handwriting, where they model how
the same character varies between writers (slant, size, wobble, pen width) — variation that carries over
to classes never seen in training.

``fill`` is the normalised value of a black pixel (``-mean / std``), given to areas from outside the image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def affine_warp(
    images: torch.Tensor, angle: torch.Tensor, shear: torch.Tensor, zoom: torch.Tensor, fill: torch.Tensor
) -> torch.Tensor:
    """Warp each image by its own rotation, x-shear and zoom about the centre, in one ``grid_sample``.

    Per image the same as torchvision's ``affine(image, angle=-angle, translate=[0, 0], scale=zoom,
    shear=[shear, 0])`` with bilinear interpolation (its ``affine`` turns clockwise, ``rotate`` and this
    function counter-clockwise).

    Args:
        images: float ``[N, C, H, W]`` (normalised; square, as the task's transforms make them).
        angle: ``[N]`` rotation in degrees, counter-clockwise on screen.
        shear: ``[N]`` x-shear angle in degrees.
        zoom: ``[N]`` scale factors (> 1 enlarges).
        fill: ``[C]`` or ``[1]`` value given to areas from outside the image (``-mean / std``: black).
    """
    count = images.shape[0]
    options = {"device": images.device, "dtype": torch.float32}
    # grid coordinates have y pointing down, so a counter-clockwise turn on screen is -angle here.
    radians = -torch.deg2rad(angle.to(**options))
    cos, sin = torch.cos(radians), torch.sin(radians)
    shear_tan = -torch.tan(torch.deg2rad(shear.to(**options)))
    # forward map = zoom * rotation @ [[1, -tan(shear)], [0, 1]]; the sampling grid needs its inverse.
    forward = torch.stack([torch.stack([cos, cos * shear_tan - sin], -1),
                           torch.stack([sin, sin * shear_tan + cos], -1)], 1) * zoom.to(**options)[:, None, None]
    theta = torch.cat([torch.linalg.inv(forward), torch.zeros(count, 2, 1, **options)], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return _sample(images, grid, fill)


def random_affine(images: torch.Tensor, degrees: float, shear: float, scale: float, fill: torch.Tensor) -> torch.Tensor:
    """:func:`affine_warp` with per-image parameters drawn uniformly: angle in ``+-degrees``, shear in
    ``+-shear``, zoom in ``1 +- scale`` (torch's global generator). One batched warp costs about what a
    per-sample ``v2.RandomAffine`` costs for a single 28 px image."""
    return affine_warp(images, _uniform(images, degrees), _uniform(images, shear), 1 + _uniform(images, scale), fill)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter of every channel: kernel truncated at ``3 sigma`` (at most the image size),
    mirrored borders without repeating the edge pixel (OpenCV's ``BORDER_REFLECT_101``)."""
    height, width = images.shape[-2:]
    radius = max(1, min(math.ceil(3 * sigma), height - 1, width - 1))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-offsets**2 / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    rows = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    cols = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), rows, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="reflect"), cols, groups=channels)


def elastic_warp(images: torch.Tensor, displacement: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """Sample every pixel ``(x, y)`` of the output at ``(x + dx, y + dy)`` of the input, bilinearly; the
    same as OpenCV's ``remap`` with ``INTER_LINEAR`` and a constant ``fill`` border.

    Args:
        images: float ``[N, C, H, W]``.
        displacement: ``[N, 2, H, W]`` offsets in pixels, ``dx`` then ``dy``.
        fill: value of areas from outside the image (``[C]`` or ``[1]``).
    """
    count, _, height, width = images.shape
    identity = torch.eye(2, 3, dtype=images.dtype, device=images.device).expand(count, 2, 3)
    grid = F.affine_grid(identity, list(images.shape), align_corners=False)
    # grid_sample's coordinates run over [-1, 1] across the image: one pixel is 2 / size.
    offset = torch.stack([displacement[:, 0] * (2 / width), displacement[:, 1] * (2 / height)], dim=-1)
    return _sample(images, grid + offset.to(images.dtype), fill)


def random_elastic(images: torch.Tensor, alpha: float, sigma: float, fill: torch.Tensor) -> torch.Tensor:
    """Elastic distortion of Simard, Steinkraus & Platt (2003), "Best practices for convolutional neural
    networks applied to visual document analysis", sec. 2: a displacement field of uniform noise in
    ``[-1, 1]`` per pixel and axis, smoothed by a Gaussian of standard deviation ``sigma`` pixels and
    scaled by ``alpha``; they use ``sigma = 4``, ``alpha = 34`` on 29 px MNIST digits (a smooth wobble of
    about 1.5 px on average, that bends strokes the way different writers do)."""
    if alpha == 0:
        return images
    count, _, height, width = images.shape
    noise = torch.rand(count, 2, height, width, device=images.device, dtype=images.dtype) * 2 - 1
    return elastic_warp(images, gaussian_blur(noise, sigma) * alpha, fill)


def random_dilate(images: torch.Tensor, probability: float, size: int = 3) -> torch.Tensor:
    """Grey-scale dilation (a ``size x size`` maximum filter) of each image with ``probability``: bright
    strokes on a dark ground (MNIST's white ink) become about ``size - 1`` pixels wider, as with a
    broader pen. There is no erosion counterpart: a 3x3 minimum filter wipes out thin 28 px strokes."""
    if size % 2 == 0:
        raise ValueError(f"random_dilate: size must be odd (the filter is centred on each pixel), got {size}")
    if probability <= 0:
        return images
    widened = F.max_pool2d(images, size, stride=1, padding=size // 2)
    chosen = torch.rand(images.shape[0], 1, 1, 1, device=images.device) < probability
    return torch.where(chosen, widened, images)


def _uniform(images: torch.Tensor, half_width: float) -> torch.Tensor:
    return (torch.rand(images.shape[0], device=images.device) * 2 - 1) * half_width


def _sample(images: torch.Tensor, grid: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    # Sampling ``images - fill`` with zero padding and adding ``fill`` back pads with ``fill``.
    fill = fill.to(images.device, images.dtype).view(1, -1, 1, 1)
    return F.grid_sample(images - fill, grid.to(images.dtype), align_corners=False) + fill
