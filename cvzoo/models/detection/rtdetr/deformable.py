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
                      weights: torch.Tensor, points: Sequence[int], method: str = "default") -> torch.Tensor:
    """The weighted sum of samples of multi-level value maps.

    Args:
        value: ``[B, S, M, D]`` the flattened maps (``S = sum(H_l W_l)``, finest first), split into ``M`` heads.
        shapes: each level's ``(H_l, W_l)``.
        locations: ``[B, Q, M, P, 2]`` sampling positions ``(x, y)`` in [0, 1] of each level's extent, the
            ``P = sum(points)`` points level by level.
        weights: ``[B, Q, M, P]`` attention weights.
        points: sampling points of each level.
        method: ``"default"``: bilinear ``grid_sample``; ``"discrete"``: the value of one cell, index
            ``int(x W + 0.5)`` (RT-DETRv2's deployment-friendly sampling, Lv et al. 2024, sec. 3.2).

    Returns:
        ``[B, Q, M D]``.
    """
    batch, _, heads, head_dim = value.shape
    queries = locations.shape[1]
    samples = []
    level_locations = locations.split(list(points), dim=3)
    for level, maps in enumerate(value.split([h * w for h, w in shapes], dim=1)):
        height, width = shapes[level]
        # [B, H W, M, D] -> [B M, D, H, W]; the level's positions [B, Q, M, P_l, 2] -> [B M, Q, P_l, 2].
        maps = maps.permute(0, 2, 3, 1).reshape(batch * heads, head_dim, height, width)
        grid = level_locations[level].transpose(1, 2).flatten(0, 1)
        if method == "discrete":
            cells = (grid * torch.tensor([width, height], dtype=grid.dtype, device=grid.device) + 0.5).to(torch.int64)
            column, row = cells[..., 0].clamp(0, width - 1), cells[..., 1].clamp(0, height - 1)
            index = (row * width + column).flatten(1)[:, None].expand(-1, head_dim, -1)
            sampled = maps.flatten(2).gather(2, index).view(batch * heads, head_dim, queries, -1)
        else:
            sampled = F.grid_sample(maps, 2 * grid - 1, mode="bilinear", padding_mode="zeros", align_corners=False)
        samples.append(sampled)
    # [B M, D, Q, P] weighted by [B M, 1, Q, P], summed over the points of every level.
    weights = weights.transpose(1, 2).reshape(batch * heads, 1, queries, -1)
    out = (torch.cat(samples, dim=-1) * weights).sum(-1).view(batch, heads * head_dim, queries)
    return out.transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Multi-scale deformable attention around reference boxes.

    Args:
        dim: token width ``C``.
        num_heads: heads ``M`` (8); must divide ``dim``.
        num_levels: value maps ``L`` (3).
        num_points: sampling points per head and level ``P`` (4), or one number per level (RT-DETRv2).
        offset_scale: a point's offset unit, in box sizes, times ``1 / P_l`` (0.5: half the box's size over P,
            RT-DETR's; RT-DETRv2 makes it a setting).
        method: ``"default"`` (bilinear) or ``"discrete"`` sampling (:func:`deformable_sample`).
    """

    def __init__(self, dim: int = 256, num_heads: int = 8, num_levels: int = 3, num_points: int | Sequence[int] = 4,
                 offset_scale: float = 0.5, method: str = "default") -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        points = (num_points,) * num_levels if isinstance(num_points, int) else tuple(int(p) for p in num_points)
        if len(points) != num_levels:
            raise ValueError(f"num_points gives {len(points)} levels, the attention has {num_levels}")
        if method not in ("default", "discrete"):
            raise ValueError(f"method must be 'default' or 'discrete', got {method!r}")
        self.num_heads, self.num_levels, self.points = num_heads, num_levels, points
        self.offset_scale, self.method = offset_scale, method
        total = sum(points)
        self.sampling_offsets = nn.Linear(dim, num_heads * total * 2)
        self.attention_weights = nn.Linear(dim, num_heads * total)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        # Each point's offset unit 1 / P_l (a constant of the layout, not a weight).
        scale = torch.tensor([1.0 / p for p in points for _ in range(p)])
        self.register_buffer("point_scale", scale, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Deformable DETR's start: each head samples along its own direction (``M`` directions around the
        circle, points at 1..P_l times the step), uniform attention weights, Glorot projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2 * math.pi / self.num_heads)
        directions = torch.stack((angles.cos(), angles.sin()), -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values
        steps = torch.cat([torch.arange(1, p + 1, dtype=torch.float32) for p in self.points])
        self.sampling_offsets.bias.copy_((directions[:, None, :] * steps[None, :, None]).flatten())
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
        heads = self.num_heads
        value = self.value_proj(memory)
        if memory_mask is not None:
            value = value.masked_fill(~memory_mask[..., None], 0.0)
        value = value.view(batch, memory.shape[1], heads, dim // heads)
        offsets = self.sampling_offsets(query).view(batch, queries, heads, -1, 2)
        weights = self.attention_weights(query).view(batch, queries, heads, -1).softmax(-1)
        # Offsets are in units of offset_scale x the box's size over P_l (RT-DETR: half the size over P).
        centre, size = reference[:, :, None, None, :2], reference[:, :, None, None, 2:]
        locations = centre + offsets * self.point_scale.to(offsets.dtype)[:, None] * size * self.offset_scale
        return self.output_proj(deformable_sample(value, shapes, locations, weights, self.points, self.method))
