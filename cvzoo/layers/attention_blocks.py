"""Transformer building blocks over token sequences ``[..., N, C]``.

    MultiHeadSelfAttention   scaled dot-product attention in ``num_heads`` subspaces
                             (Vaswani et al., 2017, §3.2), with an optional additive bias on the scores
    Mlp                      the position-wise two-layer feed-forward network
    TransformerBlock         pre-norm encoder block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``
                             (ViT: Dosovitskiy et al., 2021, Eq. 2-3)

Parameter names (``qkv``, ``proj``, ``fc1``, ``fc2``, ``norm1``, ``norm2``) are the ones timm's ViT
uses, so its checkpoints load without renaming.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from cvzoo.layers.drop_path import DropPath

NormLayer = Callable[[int], nn.Module]


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with one fused ``qkv`` projection and an output projection ``proj``.

    The ``3C`` outputs of ``qkv`` are queries, keys and values in that order, each split into
    ``num_heads`` heads of ``C / num_heads`` channels (the layout of ``nn.MultiheadAttention``'s
    ``in_proj_weight``). Scores are scaled by ``1 / sqrt(head_dim)``.

    Args:
        dim: token width ``C``.
        num_heads: number of heads; must divide ``dim``.
        qkv_bias: give the ``qkv`` projection a bias.
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
    """

    def __init__(
        self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over the ``N`` tokens of each sequence.

        Args:
            x: tokens ``[..., N, C]`` (any number of leading batch dimensions).
            attn_bias: added to the ``[..., num_heads, N, N]`` scores before the softmax (a relative
                position bias, or large negative values to mask pairs out); broadcast over the batch.

        Returns:
            ``[..., N, C]``.
        """
        *batch, tokens, dim = x.shape
        heads = self.num_heads
        # One leading batch dimension: PyTorch's fused CPU attention kernel takes 4-D q/k/v only, and
        # 5-D ones (MobileViT's [B, P, N, C] tokens) fall back to the slower reference path (MobileViT-XXS
        # ran 1.15x timm's time before this).
        qkv = self.qkv(x.reshape(-1, tokens, dim)).reshape(-1, tokens, 3, heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # three [B', heads, N, d]
        drop = self.attn_drop if self.training else 0.0
        if attn_bias is None:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        else:
            # softmax(q k^T / sqrt(d) + bias) v written out: with a mask, the kernel's fallback also
            # checks every row for all -inf scores, ~4% of a Swin-T forward pass on the CPU.
            scores = (q * self.head_dim**-0.5) @ k.transpose(-2, -1)
            scores = scores.view(*batch, heads, tokens, tokens) + attn_bias.to(scores.dtype)  # over the batch
            attn = F.dropout(scores.softmax(dim=-1), drop).view(-1, heads, tokens, tokens)
            out = attn @ v
        out = out.transpose(1, 2).reshape(*batch, tokens, dim)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """``fc1 -> act -> dropout -> fc2 -> dropout``, applied to every token independently.

    Args:
        in_features: token width.
        hidden_features: width of the hidden layer (``mlp_ratio * in_features`` in the transformers).
        act_layer: activation (GELU in ViT/Swin/ConvNeXt, SiLU in MobileViT).
        drop: dropout probability after the activation and after ``fc2``.
    """

    def __init__(
        self, in_features: int, hidden_features: int, act_layer: Callable[[], nn.Module] = nn.GELU, drop: float = 0.0
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block (Dosovitskiy et al., 2021, Eq. 2-3).

    ``x = x + drop_path(attn(norm1(x)))`` then ``x = x + drop_path(mlp(norm2(x)))``. Normalising the
    input of each branch rather than the sum keeps the residual stream an identity path, which lets deep
    stacks train without warm-up tricks (Xiong et al., 2020).

    Args:
        dim: token width.
        num_heads: attention heads.
        mlp_ratio: hidden width of the MLP relative to ``dim``.
        qkv_bias: bias on the ``qkv`` projection.
        drop: dropout after the attention projection and inside the MLP.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth probability of each residual branch.
        act_layer: MLP activation.
        norm_layer: normalisation constructor (default: LayerNorm with eps 1e-6, as in ViT).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm_layer(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., N, C]`` -> ``[..., N, C]``."""
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))
