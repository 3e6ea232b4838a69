"""Multi-scale deformable attention (Zhu et al. 2021, "Deformable DETR", sec. 4.1, eq. 3), in plain PyTorch.

Each query attends to a few sampled points per head and per level instead of to every token: from the
query it predicts ``P`` sampling offsets and ``P`` attention weights per (head, level), places the points
around its reference box (RT-DETR's decoder: offsets scaled by half the box's size over ``P``, Deformable
DETR's two-stage / box-refinement form), samples the level's value map there bilinearly and sums the
samples with the weights (softmax over the ``L P`` points of a head). The sampling is
``F.grid_sample`` (zero padding outside the map, ``align_corners=False``: a location in [0, 1] is a
position on the map's extent, cell centres at ``(i + 0.5) / size``), so no compiled extension is needed
and ONNX exports it as ``GridSample``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def deformable_sample(value: torch.Tensor, shapes: Sequence[tuple[int, int]], locations: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """The weighted sum of bilinear samples of multi-level value maps.

    Args:
        value: ``[B, S, M, D]`` the flattened maps (``S = sum(H_l W_l)``, finest first), split into ``M`` heads.
        shapes: each level's ``(H_l, W_l)``.
        locations: ``[B, Q, M, L, P, 2]`` sampling positions ``(x, y)`` in [0, 1] of each level's extent.
        weights: ``[B, Q, M, L, P]`` attention weights.

    Returns:
        ``[B, Q, M D]``.
    """
    batch, _, heads, head_dim = value.shape
    queries, levels, points = locations.shape[1], locations.shape[3], locations.shape[4]
    grids = 2 * locations - 1  # grid_sample's [-1, 1] coordinates
    samples = []
    for level, maps in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        height, width = shapes[level]
        # [B, H W, M, D] -> [B M, D, H, W]; the level's grid [B, Q, M, P, 2] -> [B M, Q, P, 2].
        maps = maps.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        samples.append(F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    # [B M, D, Q, L, P] weighted by [B M, 1, Q, L, P], summed over the L P points.
    stacked = torch.stack(samples, dim=-2)
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, levels, points)
    out = (stacked * weights).sum((-1, -2)).view(batch, heads * head_dim, queries)
    return out.transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention around reference boxes.

    Args:
        dim: token width ``C``.
        num_heads: heads ``M`` (8); must divide ``dim``.
        num_levels: value maps ``L`` (3).
        num_points: sampling points per head and level ``P`` (4).
    """

    def __init__(self, dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int = 4) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.num_levels, self.num_points = num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable DETR's start: each head samples along its own direction (``M`` directions around the
        circle, points at 1..P times the step), uniform attention weights, Glorot projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack((angles.cos(), angles.sin()), -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.arange(1, self.num_points + 1, dtype=torch.float32)
        grid = directions[:, None, None, :] * steps[None, None, :, None]
        self.sampling_offsets.bias.copy_(grid.expand(-1, self.num_levels, -1, -1).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for layer in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, memory: torch.Tensor,
                shapes: Sequence[tuple[int, int]], memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend from the queries to the memory.

        Args:
            query: ``[B, Q, C]`` (positions already added).
            reference: ``[B, Q, 4]`` reference boxes, normalised ``cxcywh``.
            memory: ``[B, S, C]`` the flattened value maps.
            shapes: each level's ``(H, W)``.
            memory_mask: ``[B, S]`` True for valid tokens (padding contributes zeros), or None.

        Returns:
            ``[B, Q, C]``.
        """
        batch, queries, dim = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        value = self.value_proj(memory)
        if memory_mask is not None:
            value = value.masked_fill(~memory_mask[..., None], 0.0)
        value = value.view(batch, memory.shape[1], heads, dim // heads)
        offsets = self.sampling_offsets(query).view(batch, queries, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, levels * points).softmax(-1)
        weights = weights.view(batch, queries, heads, levels, points)
        # Offsets are in units of half the box's size over P (RT-DETR / Deformable DETR with boxes).
        centre, size = reference[:, :, None, None, None, :2], reference[:, :, None, None, None, 2:]
        locations = centre + offsets / points * size * 0.5
        return self.output_proj(deformable_sample(value, shapes, locations, weights))
