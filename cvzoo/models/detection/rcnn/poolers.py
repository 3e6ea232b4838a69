"""RoIAlign over a feature pyramid: each box is pooled from the one level that suits its size.

He et al. 2017 ("Mask R-CNN", sec. 3) replace RoIPool's quantisation by bilinear sampling (RoIAlign);
Lin et al. 2017 ("Feature Pyramid Networks", eq. 1) assign a box of width ``w`` and height ``h`` to level
``k = floor(k0 + log2(sqrt(w h) / 224))``, ``k0 = 4`` (a 224 x 224 box, ImageNet's size, pools from P4),
clamped to the levels present. The kernel is ``torchvision.ops.roi_align`` with torchvision's detection
settings (``aligned=False``, ``sampling_ratio=2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.ops import roi_align


def level_scale(feature_size: Sequence[int], image_size: Sequence[int]) -> float:
    """The map's scale relative to the image, rounded to a power of two (``1 / stride``), from the heights."""
    return 2.0 ** round(math.log2(float(feature_size[0]) / float(image_size[0])))


def to_rois(boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per image ``[N_i, 4]`` xyxy boxes -> ``[sum N_i, 5]`` rows ``(image index, x1, y1, x2, y2)``."""
    rows = [torch.cat((torch.full_like(b[:, :1], i), b), dim=1) for i, b in enumerate(boxes)]
    return torch.cat(rows, dim=0)


def fpn_levels(boxes: torch.Tensor, k_min: int, k_max: int, canonical_scale: float = 224.0,
               canonical_level: int = 4, eps: float = 1e-6) -> torch.Tensor:
    """Lin et al. eq. 1: ``[N, 4]`` xyxy boxes -> ``[N]`` int64 level index ``k - k_min`` in ``[0, k_max - k_min]``."""
    size = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sqrt()
    levels = torch.floor(canonical_level + torch.log2(size / canonical_scale) + eps)
    return (levels.clamp(min=k_min, max=k_max).to(torch.int64) - k_min).to(torch.int64)


class MultiScaleRoIAlign(nn.Module):
    """Pool every box from its pyramid level to ``[C, S, S]``.

    The levels' strides are read from the maps' sizes relative to the largest image of the batch (so any
    backbone works), and Lin et al.'s ``k`` ranges over ``log2`` of the finest and coarsest strides.

    Args:
        output_size: ``S`` (7 for the box head, 14 for the mask head).
        sampling_ratio: bilinear samples per bin side (2).
        canonical_scale, canonical_level: eq. 1's 224 and ``k0 = 4``.
    """

    def __init__(self, output_size: int, sampling_ratio: int = 2, canonical_scale: float = 224.0,
                 canonical_level: int = 4) -> None:
        super().__init__()
        self.output_size = output_size
        self.sampling_ratio = sampling_ratio
        self.canonical_scale, self.canonical_level = canonical_scale, canonical_level

    def forward(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                image_sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
        """Levels ``[B, C, H_l, W_l]`` (finest first), per image ``[N_i, 4]`` xyxy boxes in image pixels
        -> ``[sum N_i, C, S, S]`` in the boxes' order."""
        largest = (max(h for h, _ in image_sizes), max(w for _, w in image_sizes))
        scales = [level_scale(f.shape[-2:], largest) for f in features]
        rois = to_rois(boxes)
        size = (self.output_size, self.output_size)
        if len(features) == 1:
            return roi_align(features[0], rois, size, scales[0], self.sampling_ratio)
        k_min, k_max = int(-math.log2(scales[0])), int(-math.log2(scales[-1]))
        levels = fpn_levels(torch.cat(list(boxes)), k_min, k_max, self.canonical_scale, self.canonical_level)
        # rois.shape[0], not len(rois): traced for ONNX export, the count stays a tensor in the graph.
        pooled = features[0].new_zeros((rois.shape[0], features[0].shape[1], *size))
        for level, (feature, scale) in enumerate(zip(features, scales)):
            index = torch.where(levels == level)[0]
            level_pooled = roi_align(feature, rois[index], size, scale, self.sampling_ratio).to(pooled.dtype)
            if torch.onnx.is_in_onnx_export():
                # The traced index assignment takes the tracing image's count of boxes per level as fixed
                # (one box becomes a squeezed row); a scatter keeps the count dynamic.
                rows = index[:, None, None, None].expand(-1, *level_pooled.shape[1:])
                pooled = pooled.scatter(0, rows, level_pooled)
            else:
                pooled[index] = level_pooled
        return pooled

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio}"
