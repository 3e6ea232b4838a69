"""Layer normalisation over the channels of a channels-first map ``[B, C, H, W]``.

``nn.LayerNorm`` normalises the trailing dimensions, which suits token sequences ``[B, N, C]`` and
channels-last maps ``[B, H, W, C]``. ConvNeXt (Liu et al., 2022, §2.6 "Separate downsampling layers")
also normalises channels-first maps before its strided convs and in its head; ``LayerNorm2d`` does that
by moving the channels last, normalising, and moving them back, so its parameters are those of an
``nn.LayerNorm(C)`` and checkpoints hold the same ``weight`` / ``bias`` tensors.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LayerNorm2d(nn.LayerNorm):
    """``nn.LayerNorm(channels)`` applied at every position of a ``[B, C, H, W]`` map.

    Each pixel's ``C`` values are normalised to zero mean and unit variance, then scaled by ``weight``
    and shifted by ``bias`` (both ``[C]``); the statistics never mix positions or samples.

    Args:
        channels: number of channels ``C``.
        eps: added to the variance (1e-6 in ConvNeXt).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"LayerNorm2d expects a [B, C, H, W] map, got shape {tuple(x.shape)}")
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)
