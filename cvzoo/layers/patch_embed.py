"""Patch embedding: cut the image into ``p x p`` patches and project each one to a vector.

ViT (Dosovitskiy et al., 2021, §3.1) flattens every non-overlapping ``p x p`` patch and maps it with one
shared linear layer; a conv with kernel size and stride ``p`` computes exactly that, for all patches at
once. Swin (Liu et al., 2021, §3.1) does the same with ``p = 4`` and a LayerNorm after the projection.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class PatchEmbed(nn.Module):
    """``[B, C_in, H, W]`` image -> ``[B, H/p, W/p, D]`` grid of patch embeddings (channels last).

    Args:
        in_channels: image channels.
        embed_dim: embedding width ``D``.
        patch_size: patch side ``p`` (kernel size and stride of the projection).
        norm_layer: optional normalisation over ``D`` applied to every patch (Swin uses LayerNorm).
        strict: raise ``ValueError`` when ``H`` or ``W`` is not a multiple of ``p`` (ViT). When False,
            the right and bottom borders that do not fill a whole patch are dropped, as a strided conv
            does (Swin, like torchvision's Swin).
    """

    def __init__(
        self,
        in_channels: int,
        embed_dim: int,
        patch_size: int,
        norm_layer: Callable[[int], nn.Module] | None = None,
        strict: bool = True,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.strict = strict
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Number of patches along each side for an ``height x width`` image."""
        if self.strict and (height % self.patch_size or width % self.patch_size):
            raise ValueError(
                f"input size {height}x{width} is not divisible by the patch size {self.patch_size}; "
                f"resize or crop the images to a multiple of {self.patch_size}"
            )
        if height < self.patch_size or width < self.patch_size:
            raise ValueError(f"input size {height}x{width} is smaller than one {self.patch_size}px patch")
        return height // self.patch_size, width // self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.grid_size(x.shape[-2], x.shape[-1])
        return self.norm(self.proj(x).permute(0, 2, 3, 1))
