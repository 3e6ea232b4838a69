"""Test-time augmentation (TTA) for detectors: several scaled / flipped passes merged before one NMS.

The image batch is run at a few scales, some of them mirrored left-right (YOLOv5's ``--augment``
passes, chosen here: scale 1.0 as is, 0.83 flipped, 0.67 as is). Each pass's *decoded* predictions
(xyxy boxes in that pass's pixels + class scores, before NMS) are mapped back to the frame of the
un-augmented input and concatenated; the caller then runs the usual NMS once. Merging the raw
candidates rather than per-pass NMS results lets that one NMS choose the best box among all passes
instead of keeping near-duplicates from different passes. Smaller scales help the large objects, the
flip averages out left-right biases of the learned filters; the cost is about 1 + 0.69 + 0.45 = 2.1
forward passes.

Geometry of a pass (all exact, so that ``deaugment_predictions`` is the exact inverse of
``augment_boxes``): flip the ``[H, W]`` input (``x -> W - x``), resize to ``(round(H s), round(W s))``
(per-axis ratios ``ry = round(H s) / H``, ``rx = round(W s) / W``), pad right and bottom with the
letterbox grey up to multiples of the stride (the padding adds no offset).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The letterbox grey (114 of 255), so that the padding looks like the padding seen in training.
PAD_VALUE = 114 / 255


@dataclass(frozen=True)
class AugmentPass:
    """One TTA pass: resize by ``scale`` (1.0 = as is) after an optional horizontal ``flip``."""

    scale: float
    flip: bool = False


DEFAULT_PASSES: tuple[AugmentPass, ...] = (AugmentPass(1.0), AugmentPass(0.83, flip=True), AugmentPass(0.67))


def augment_images(images: torch.Tensor, augment: AugmentPass, stride: int = 32) -> tuple[torch.Tensor, tuple[float, float]]:
    """Flip, resize and pad a batch for one pass.

    Args:
        images: ``[B, C, H, W]`` float images in [0, 1].
        augment: the pass.
        stride: the model's largest stride; the output sides are padded to multiples of it.

    Returns:
        ``(images [B, C, H', W'], (rx, ry))``: the exact per-axis scale of the content, for the inverse.
    """
    height, width = images.shape[-2:]
    if augment.flip:
        images = images.flip(-1)
    new_h, new_w = max(1, round(height * augment.scale)), max(1, round(width * augment.scale))
    if (new_h, new_w) != (height, width):
        images = F.interpolate(images, size=(new_h, new_w), mode="bilinear", align_corners=False)
    pad_h, pad_w = math.ceil(new_h / stride) * stride - new_h, math.ceil(new_w / stride) * stride - new_w
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), value=PAD_VALUE)
    return images, (new_w / width, new_h / height)


def augment_boxes(boxes: torch.Tensor, ratio: tuple[float, float], flip: bool, width: int) -> torch.Tensor:
    """Where xyxy boxes ``[..., 4]`` of the un-augmented input (``width`` pixels wide) land in a pass."""
    if flip:
        boxes = torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], dim=-1)
    rx, ry = ratio
    return boxes * boxes.new_tensor([rx, ry, rx, ry])


def deaugment_predictions(predictions: torch.Tensor, ratio: tuple[float, float], flip: bool, width: int) -> torch.Tensor:
    """Inverse of ``augment_boxes`` on decoded predictions ``[..., 4 + K]`` (xyxy first, scores untouched).

    Undo the scale, then the flip (``x -> W - x``, which also swaps x1 and x2 so that ``x1 <= x2``).
    """
    rx, ry = ratio
    boxes = predictions[..., :4] / predictions.new_tensor([rx, ry, rx, ry])
    if flip:
        boxes = torch.stack([width - boxes[..., 2], boxes[..., 1], width - boxes[..., 0], boxes[..., 3]], dim=-1)
    return torch.cat([boxes, predictions[..., 4:]], dim=-1)


def augmented_predictions(
    decode: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    passes: Sequence[AugmentPass] = DEFAULT_PASSES,
    stride: int = 32,
) -> torch.Tensor:
    """Decoded predictions of every pass in the frame of ``images``, concatenated for one NMS.

    Args:
        decode: images ``[B, C, H', W']`` -> decoded predictions ``[B, A', 4 + K]`` (xyxy pixels of
            those images, class scores), e.g. ``lambda x: model.decode(model(x))``.
        images: ``[B, C, H, W]`` the un-augmented network input (e.g. a letterboxed batch).
        passes: scales and flips to run.
        stride: the model's largest stride.

    Returns:
        ``[B, sum of A' over the passes, 4 + K]`` xyxy in pixels of ``images``.
    """
    width = images.shape[-1]
    merged = []
    for augment in passes:
        x, ratio = augment_images(images, augment, stride)
        merged.append(deaugment_predictions(decode(x), ratio, augment.flip, width))
    return torch.cat(merged, dim=1)
