"""CornerNet's prediction module (Sec. 3.4, Fig. 7): for each corner type a corner pooling module, then
three branches: heatmaps (one channel per class), embeddings (1-D) and offsets (2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from cvzoo.models.detection.cornernet.corner_pool import CornerPoolModule

# Focal-loss prior (Lin et al. 2017; CornerNet's code initialises the heatmap bias to -2.19): every
# heatmap starts at p = 0.1 so that the many negatives do not swamp the first updates.
HEATMAP_PRIOR = 0.1


def branch(in_channels: int, hidden_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv-ReLU then a 1x1 conv, the shape of each of CornerNet's output branches."""
    return nn.Sequential(nn.Conv2d(in_channels, hidden_channels, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden_channels, out_channels, 1))


class CornerHead(nn.Module):
    """Prediction module of one corner type.

    Args:
        channels: input channels (the hourglass output, 256 in the paper).
        pool_channels: the corner pooling branches' channels (128).
        head_channels: hidden channels of each output branch (256).
        num_classes: ``C``, heatmap channels.
        corner: ``"top_left"`` or ``"bottom_right"``.
        embedding_dim: 1 in the paper.
    """

    def __init__(self, channels: int, pool_channels: int, head_channels: int, num_classes: int, corner: str,
                 embedding_dim: int = 1) -> None:
        super().__init__()
        self.pool = CornerPoolModule(channels, pool_channels, corner)
        self.heatmap = branch(channels, head_channels, num_classes)
        self.embedding = branch(channels, head_channels, embedding_dim)
        self.offset = branch(channels, head_channels, 2)
        with torch.no_grad():
            self.heatmap[-1].bias.fill_(-math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))  # -2.197

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[B, channels, H, W]`` -> heatmap logits ``[B, C, H, W]``, embeddings ``[B, D, H, W]``,
        offsets ``[B, 2, H, W]`` (x then y, in output-map pixels)."""
        pooled = self.pool(x)
        return self.heatmap(pooled), self.embedding(pooled), self.offset(pooled)
