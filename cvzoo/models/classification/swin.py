"""Swin Transformer (Liu et al., 2021, "Hierarchical Vision Transformer using Shifted Windows"),
torchvision-compatible.

A 4x4 patch embedding, then four stages of transformer blocks that attend only inside non-overlapping
``M x M`` windows (W-MSA). Every second block shifts the windows by ``M // 2`` (SW-MSA) so information
crosses window borders; the shift is done as a cyclic roll of the map plus a mask that keeps tokens
from attending across the seams the roll creates (§3.2, Fig. 4). Each head adds a learnt bias indexed
by the relative offset of the two tokens (§3.2, Eq. 4). Patch merging between stages concatenates
each 2x2 neighbourhood and projects ``4C -> 2C``, halving the resolution (§3.1).

Input sizes: like torchvision's implementation, any size works. The patch embedding drops the right
and bottom borders that do not fill a 4x4 patch; patch merging pads odd maps with zeros; and each block
pads its (normalised) map with zeros to a multiple of the window size and crops after attention. The
padded tokens take part in attention, and a map that fits in one window is not shifted. Outputs match
torchvision's for every size; the paper's configuration is 224 px, where nothing is padded.

Features: the four stage outputs as ``[B, C, H, W]`` maps at reductions 4, 8, 16, 32 (before the final
LayerNorm, which the head applies).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from cvzoo.layers.attention_blocks import Mlp, MultiHeadSelfAttention
from cvzoo.layers.drop_path import DropPath
from cvzoo.layers.patch_embed import PatchEmbed
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

# Added to the scores of token pairs that the shifted-window mask separates (the paper's value; after the
# softmax their weight is ~e^-100, i.e. zero).
MASKED_SCORE = -100.0


def relative_position_index(window_size: int) -> torch.Tensor:
    """``[M*M, M*M]`` index into the ``(2M-1)^2``-entry bias table for every pair of window positions.

    The offset ``(dy, dx)`` between two tokens lies in ``[-(M-1), M-1]^2``; shifted to ``[0, 2M-2]``,
    it is numbered row-major: ``(dy + M - 1) * (2M - 1) + (dx + M - 1)``.
    """
    positions = torch.arange(window_size)
    rows, cols = positions.repeat_interleave(window_size), positions.repeat(window_size)  # row-major
    delta_rows = rows[:, None] - rows[None, :] + window_size - 1
    delta_cols = cols[:, None] - cols[None, :] + window_size - 1
    return delta_rows * (2 * window_size - 1) + delta_cols


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """``[B, H, W, C]`` (sides multiples of M) -> ``[B, nW, M*M, C]``, windows in row-major order."""
    batch, height, width, dim = x.shape
    x = x.reshape(batch, height // window_size, window_size, width // window_size, window_size, dim)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, -1, window_size * window_size, dim)


def window_merge(windows: torch.Tensor, window_size: int, height: int, width: int) -> torch.Tensor:
    """Inverse of ``window_partition``: ``[B, nW, M*M, C]`` -> ``[B, H, W, C]``."""
    batch, dim = windows.shape[0], windows.shape[-1]
    x = windows.reshape(batch, height // window_size, width // window_size, window_size, window_size, dim)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(batch, height, width, dim)


def shifted_window_mask(
    height: int, width: int, window_size: int, shift: tuple[int, int], device: torch.device
) -> torch.Tensor:
    """Additive mask ``[nW, 1, M*M, M*M]`` for a map rolled by ``shift`` (0 within a region, -100 across).

    After the roll, the last ``M`` rows hold two regions: rows that were inside the map (the first
    ``M - shift`` of them) and rows that wrapped around from the top; likewise for columns. Label each
    position by its (row region, column region) and let tokens attend only to tokens with the same label
    (Liu et al., 2021, Fig. 4). A side that is not shifted has a single region.
    """

    def regions(size: int, shift_size: int) -> torch.Tensor:
        coords = torch.arange(size, device=device)
        if shift_size == 0:
            return torch.zeros_like(coords)
        return (coords >= size - window_size).long() + (coords >= size - shift_size).long()

    labels = regions(height, shift[0])[:, None] * 3 + regions(width, shift[1])[None, :]
    windows = window_partition(labels[None, :, :, None], window_size)[0, :, :, 0]  # [nW, M*M]
    different = windows[:, :, None] != windows[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, MASKED_SCORE)[:, None]


class WindowAttention(MultiHeadSelfAttention):
    """Multi-head self-attention within ``M x M`` windows, with the relative position bias and the
    optional cyclic shift (``shift_size > 0``) of SW-MSA.

    Works on a channels-last map ``[B, H, W, C]``: pads it to multiples of ``M``, rolls it by
    ``-shift``, attends within windows, and undoes all three.
    """

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int = 0, attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=proj_drop)
        if not 0 <= shift_size < window_size:
            raise ValueError(f"shift_size must be in [0, window_size), got {shift_size} for window {window_size}")
        self.window_size = window_size
        self.shift_size = shift_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Derived from the window size: not saved in checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> torch.Tensor:
        """``[heads, M*M, M*M]`` bias gathered from the table."""
        tokens = self.window_size * self.window_size
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]
        return bias.reshape(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H, W, C]`` -> ``[B, H, W, C]``."""
        height, width = x.shape[1:3]
        size = self.window_size
        x = F.pad(x, (0, 0, 0, (size - width % size) % size, 0, (size - height % size) % size))
        padded_h, padded_w = x.shape[1:3]
        # A side covered by a single window has nothing to exchange across windows: no shift.
        shift = (self.shift_size if padded_h > size else 0, self.shift_size if padded_w > size else 0)
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        bias = self.relative_position_bias()[None]  # [1, heads, N, N], broadcast over windows
        if any(shift):
            bias = bias + shifted_window_mask(padded_h, padded_w, size, shift, x.device)
        # Windows [B, nW, N, C]; the score bias [1 or nW, heads, N, N] broadcasts over the batch.
        windows = super().forward(window_partition(x, size), bias)
        x = window_merge(windows, size, padded_h, padded_w)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :height, :width]


class SwinBlock(nn.Module):
    """``x + drop_path(attn(norm1(x)))`` then ``x + drop_path(mlp(norm2(x)))`` on ``[B, H, W, C]``."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift_size: int, mlp_ratio: float = 4.0,
        drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size, shift_size, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), nn.GELU, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (``[B, H, W, C] -> [B, H/2, W/2, 4C]``), LayerNorm, project to 2C.

    Odd sides are padded with zeros first. The four neighbours are concatenated in the order
    (top-left, bottom-left, top-right, bottom-right), the order checkpoints were trained with.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Optional patch merging, then ``depth`` blocks alternating regular and shifted windows."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, window_size: int, downsample: bool,
        drop_path: Sequence[float], mlp_ratio: float = 4.0, drop: float = 0.0, attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.downsample = PatchMerging(dim // 2) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            SwinBlock(
                dim, num_heads, window_size, shift_size=0 if index % 2 == 0 else window_size // 2,
                mlp_ratio=mlp_ratio, drop=drop, attn_drop=attn_drop, drop_path=drop_path[index],
            )
            for index in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class SwinTransformer(Classifier):
    """Swin Transformer (v1) for classification.

    Args:
        patch_size: side of the patches of the embedding (4).
        embed_dim: width ``C`` of the first stage; stage ``i`` has ``C * 2^i`` channels.
        depths: blocks per stage.
        num_heads: heads per stage.
        window_size: window side ``M``.
        mlp_ratio: MLP hidden width relative to the stage width.
        num_classes: classifier outputs; 0 makes ``forward`` return pooled ``[B, 8C]`` features.
        in_channels: image channels.
        drop_rate, attn_drop_rate: dropout after projections / on attention weights.
        drop_path_rate: stochastic depth, linear from 0 (first block) to this value (last block).
    """

    classifier_name = "head"

    def __init__(
        self,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} differ in length")
        self.patch_embed = PatchEmbed(in_channels, embed_dim, patch_size, norm_layer=nn.LayerNorm, strict=False)
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        self.feature_info = []
        for index, (depth, heads) in enumerate(zip(depths, num_heads)):
            dim = embed_dim * 2**index
            first = sum(depths[:index])
            self.stages.append(SwinStage(
                dim, depth, heads, window_size, downsample=index > 0, drop_path=rates[first:first + depth],
                mlp_ratio=mlp_ratio, drop=drop_rate, attn_drop=attn_drop_rate,
            ))
            self.feature_info.append(FeatureInfo(dim, patch_size * 2**index, f"stages.{index}"))
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.num_classes = num_classes
        self.head: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, WindowAttention):
                nn.init.trunc_normal_(module.relative_position_bias_table, std=0.02)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C_in, H, W]`` -> four ``[B, C_i, H_i, W_i]`` maps at reductions 4, 8, 16, 32."""
        x = self.patch_embed(x)  # channels last from here on
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x.permute(0, 3, 1, 2))
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.norm(features[-1].permute(0, 2, 3, 1)).mean(dim=(1, 2))


_TORCHVISION_KEY = re.compile(r"^features\.(\d+)\.(.+)$")


def swin_from_torchvision(state: StateDict) -> StateDict:
    """torchvision ``SwinTransformer`` keys -> cvzoo keys.

    torchvision numbers ``features`` as [embedding, stage 1, merging, stage 2, merging, ...]; cvzoo puts
    each merging at the start of the stage it feeds. The derived ``relative_position_index`` buffers are
    dropped. Keys of other layouts pass through unchanged.
    """
    converted = {}
    for key, value in state.items():
        match = _TORCHVISION_KEY.match(key)
        if key.endswith("relative_position_index"):
            continue
        if match:
            index, rest = int(match.group(1)), match.group(2)
            if index == 0:
                rest = rest.replace("0.", "proj.", 1) if rest.startswith("0.") else rest.replace("2.", "norm.", 1)
                key = f"patch_embed.{rest}"
            elif index % 2 == 0:
                key = f"stages.{index // 2}.downsample.{rest}"
            else:
                block, _, part = rest.partition(".")
                part = part.replace("mlp.0.", "mlp.fc1.").replace("mlp.3.", "mlp.fc2.")
                key = f"stages.{index // 2}.blocks.{block}.{part}"
        converted[key] = value
    return converted


def swin_from_timm(state: StateDict) -> StateDict:
    """timm ``SwinTransformer`` keys (timm >= 0.9: merging at the start of ``layers.i``, ``head.fc``) ->
    cvzoo keys. Its blocks, attention and merging order are cvzoo's; the derived
    ``relative_position_index`` and ``attn_mask`` buffers are dropped."""
    converted = {}
    for key, value in state.items():
        if key.endswith(("relative_position_index", "attn_mask")):
            continue
        if key.startswith("layers."):
            key = "stages." + key[len("layers."):]
        elif key.startswith("head.fc."):
            key = "head." + key[len("head.fc."):]
        converted[key] = value
    return converted


register_remap("swintransformer", swin_from_torchvision, name="swin:torchvision")
register_remap("swintransformer", swin_from_timm, name="swin:timm")

Swin = SwinTransformer
register_model("swin_t", Swin, embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.2,
               reference="torchvision:swin_t")
register_model("swin_s", Swin, embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), drop_path_rate=0.3,
               reference="torchvision:swin_s")
register_model("swin_b", Swin, embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), drop_path_rate=0.5,
               reference="torchvision:swin_b")
