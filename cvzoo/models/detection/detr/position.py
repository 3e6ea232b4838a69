"""The sine positional encoding of DETR's image features, aware of each image's padding.

Carion et al. 2020 (DETR, sec. 3.2 and appendix A.4) give the transformer, which is permutation-invariant,
fixed 2-D positions: the "Attention is all you need" sines and cosines (Vaswani et al. 2017, sec. 3.5)
applied to the row and to the column index separately, half of the channels each. The indices are counted
over the valid (unpadded) cells only and normalised by the image's own extent to ``(0, 2 pi]``, so that a
small image padded into a large batch gets the same encoding as alone, and padding cells do not shift it.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEncoding(nn.Module):
    """``mask [B, H, W]`` (True = a valid cell) -> encoding ``[B, 2 * num_features, H, W]``.

    Channels ``[0, num_features)`` encode the row, ``[num_features, 2 num_features)`` the column; within each
    half, even channels are ``sin(p / T^(2i/F))`` and odd ones the matching ``cos`` (interleaved).

    Args:
        num_features: channels per axis (half the transformer width).
        temperature: ``T``, the longest wavelength.
        scale: the normalised position's range (DETR: ``2 pi``).
    """

    def __init__(self, num_features: int = 128, temperature: float = 10000.0, scale: float = 2 * math.pi) -> None:
        super().__init__()
        self.num_features = num_features
        self.temperature = temperature
        self.scale = scale

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        valid = mask.to(torch.float32)
        rows = valid.cumsum(1)
        columns = valid.cumsum(2)
        # Normalise by the last valid index of each column / row (the image's own height / width); the
        # epsilon is DETR's, and it keeps padding-only columns finite.
        eps = 1e-6
        rows = rows / (rows[:, -1:, :] + eps) * self.scale
        columns = columns / (columns[:, :, -1:] + eps) * self.scale
        index = torch.arange(self.num_features, dtype=torch.float32, device=mask.device)
        wavelengths = self.temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / self.num_features)
        return torch.cat((self._interleave(rows[..., None] / wavelengths),
                          self._interleave(columns[..., None] / wavelengths)), dim=3).permute(0, 3, 1, 2)

    @staticmethod
    def _interleave(angles: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, F]`` angles -> sin of the even ones and cos of the odd ones, interleaved ``[B, H, W, F]``."""
        return torch.stack((angles[..., 0::2].sin(), angles[..., 1::2].cos()), dim=4).flatten(3)

    def extra_repr(self) -> str:
        return f"num_features={self.num_features}, temperature={self.temperature}, scale={self.scale:.4f}"
