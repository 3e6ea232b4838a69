"""DETR's transformer: a post-norm encoder over the image features and a decoder over the object queries
(Carion et al. 2020, sec. 3.2 and fig. 10).

The layers are Vaswani et al.'s (2017), with two changes DETR makes: the fixed positional encoding is added
to the queries and keys of every attention (never to the values) instead of once to the input, and the
decoder decodes its N queries in parallel (no causal mask), each query slot carrying a learned embedding
("object query") added the same way. The decoder's output after every layer goes through the shared final
layer norm and is returned, so that the prediction heads can be applied to each layer for the auxiliary
decoding losses (sec. 3.2, "Auxiliary decoding losses").

Tokens are ``[B, N, C]`` (batch first); a key padding mask is ``[B, N]`` with True for a valid token.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers.attention_blocks import Mlp


class Attention(nn.Module):
    """Multi-head attention with separate query, key and value inputs (the caller adds the positions).

    Args:
        dim: token width ``C``.
        num_heads: heads; must divide ``dim``.
        dropout: dropout on the attention weights (training only), as ``nn.MultiheadAttention`` in DETR.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, length, dim = tokens.shape
        return tokens.view(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                key_mask: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``query [B, Nq, C]``, ``key`` and ``value [B, Nk, C]``, ``key_mask [B, Nk]`` and ``attn_mask [Nq, Nk]``
        (bool, True = attend; RT-DETR's denoising groups use the latter) -> ``[B, Nq, C]``."""
        q, k, v = self._heads(self.q_proj(query)), self._heads(self.k_proj(key)), self._heads(self.v_proj(value))
        mask = None if key_mask is None else key_mask[:, None, None, :]
        if attn_mask is not None:
            mask = attn_mask if mask is None else mask & attn_mask
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class EncoderLayer(nn.Module):
    """Post-norm encoder layer: ``x = norm1(x + attn(x + pos, x + pos, x))``, ``x = norm2(x + ffn(x))``."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float,
                 act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        # DETR's FFN: linear -> ReLU -> dropout -> linear, and dropout on the residual branch (RT-DETR's AIFI
        # layer is the same with GELU).
        self.mlp = Mlp(dim, ffn_dim, act_layer, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        with_pos = x + pos
        x = self.norm1(x + self.dropout(self.self_attn(with_pos, with_pos, x, mask)))
        return self.norm2(x + self.mlp(x))


class DecoderLayer(nn.Module):
    """Post-norm decoder layer: self-attention among the queries, cross-attention to the encoder's memory,
    FFN; the query embedding is added to the queries (and self-attention keys), the image positions to the
    memory's keys."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, num_heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, ffn_dim, nn.ReLU, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, memory: torch.Tensor,
                memory_keys: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """``queries [B, N, C]``, ``query_pos [N, C]`` (broadcast over the batch), ``memory [B, S, C]``, ``memory_keys`` = memory +
        positions, ``mask [B, S]`` -> ``[B, N, C]``."""
        with_pos = queries + query_pos
        queries = self.norm1(queries + self.dropout(self.self_attn(with_pos, with_pos, queries)))
        attended = self.cross_attn(queries + query_pos, memory_keys, memory, mask)
        queries = self.norm2(queries + self.dropout(attended))
        return self.norm3(queries + self.mlp(queries))


class Transformer(nn.Module):
    """Encoder + decoder of DETR.

    Args:
        dim: width ``C`` of tokens and queries (256).
        num_heads: attention heads (8).
        encoder_layers, decoder_layers: depths (6, 6).
        ffn_dim: hidden width of the FFNs (2048).
        dropout: dropout in attention weights, residual branches and FFNs (0.1).
    """

    def __init__(self, dim: int = 256, num_heads: int = 8, encoder_layers: int = 6, decoder_layers: int = 6,
                 ffn_dim: int = 2048, dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim, dropout) for _ in range(decoder_layers))
        self.decoder_norm = nn.LayerNorm(dim)
        # DETR initialises every matrix of its transformer with Glorot's uniform law.
        for parameter in self.parameters():
            if parameter.dim() > 1:
                nn.init.xavier_uniform_(parameter)
        # The decoder starts from all-zero queries, so the first layer's self-attention values are its value
        # projection's bias alone: the weight multiplies zeros and never receives a gradient. It is frozen
        # to say so (it still loads from a checkpoint).
        if decoder_layers:
            self.decoder[0].self_attn.v_proj.weight.requires_grad_(False)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None, query_embed: torch.Tensor,
                all_layers: bool = True) -> torch.Tensor:
        """Encode the image tokens and decode the queries.

        Args:
            tokens: projected image features ``[B, S, C]`` (S = H' W').
            pos: their positional encoding ``[B, S, C]``.
            mask: ``[B, S]`` True for tokens inside the image, None when no image is padded.
            query_embed: the learned object queries ``[N, C]``.
            all_layers: return every decoder layer's output (the auxiliary losses), else only the last.

        Returns:
            ``[L, B, N, C]``: the decoder outputs after the final layer norm, ``L`` = decoder layers (or 1).
        """
        memory = tokens
        for layer in self.encoder:
            memory = layer(memory, pos, mask)
        memory_keys = memory + pos
        # DETR starts the decoder from zeros: the query embeddings enter only as positions.
        queries = torch.zeros(memory.shape[0], *query_embed.shape, dtype=memory.dtype, device=memory.device)
        outputs = []
        for index, layer in enumerate(self.decoder):
            queries = layer(queries, query_embed, memory, memory_keys, mask)
            if all_layers or index == len(self.decoder) - 1:
                outputs.append(self.decoder_norm(queries))
        return torch.stack(outputs)
