"""RT-DETR's decoder (Zhao et al. 2024, sec. 4.3-4.4): IoU-aware query selection over the encoder's tokens,
then Deformable DETR's decoder with iterative box refinement.

Query selection: every token of the encoder's three maps is a proposal, an anchor box at its cell (side
``0.05 * 2^level`` of the image, Deformable DETR's two-stage anchors) refined by a box head; a class head
scores it. The ``N`` tokens of highest best-class score become the decoder's queries: their (detached)
features are the content queries and their boxes the initial references. The "IoU-aware" part is the
training signal: the varifocal loss (``criterion.py``) makes a token's class score its box's IoU, so the
selection prefers well-localised tokens.

Each decoder layer: self-attention among the queries (plus the denoising queries, kept from leaking the
ground truth by a mask), deformable cross-attention around each query's reference box, FFN, all post-norm;
the query's position is an MLP of its reference box. After each layer the layer's box head predicts a
correction in logit space, ``box = sigmoid(head(x) + logit(reference))``, which becomes the next layer's
reference (detached: each layer learns its own step, Zhu et al. 2021, sec. 4.2 / appendix A.4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers.attention_blocks import Mlp
from cvzoo.models.detection.detr.detr import BoxHead
from cvzoo.models.detection.detr.transformer import Attention
from cvzoo.models.detection.rtdetr.deformable import MSDeformableAttention


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to [0, 1] and both terms to at least ``eps`` (finite at 0 and 1)."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def make_anchors(shapes: Sequence[tuple[int, int]], grid_size: float = 0.05, device: torch.device | None = None,
                 dtype: torch.dtype = torch.float32, eps: float = 1e-2) -> tuple[torch.Tensor, torch.Tensor]:
    """One anchor per cell of every level, in logit space.

    Args:
        shapes: each level's ``(H, W)``, finest first.
        grid_size: the finest level's anchor side as a fraction of the image; doubled per level.
        eps: anchors with a coordinate outside ``(eps, 1 - eps)`` are invalid (a cell on the border of a coarse
            map, or a box as large as the image).

    Returns:
        ``anchors [1, S, 4]``: ``logit(cx, cy, w, h)`` of each cell's box, the largest float for invalid ones
        (they stay unselectable after the box head adds to them), and ``valid [1, S, 1]`` bool.
    """
    anchors = []
    for level, (height, width) in enumerate(shapes):
        rows, columns = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                                       torch.arange(width, device=device, dtype=dtype), indexing="ij")
        centres = torch.stack(((columns + 0.5) / width, (rows + 0.5) / height), -1)
        sides = torch.full_like(centres, grid_size * 2.0 ** level)
        anchors.append(torch.cat((centres, sides), -1).reshape(-1, 4))
    boxes = torch.cat(anchors)[None]
    valid = ((boxes > eps) & (boxes < 1 - eps)).all(-1, keepdim=True)
    logits = torch.log(boxes / (1 - boxes))
    return torch.where(valid, logits, torch.full((), torch.finfo(dtype).max, dtype=dtype, device=device)), valid


class DecoderLayer(nn.Module):
    """Post-norm: self-attention (queries and keys get the query position), deformable cross-attention
    (its query gets the position), FFN (ReLU)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float, num_levels: int,
                 num_points: int | Sequence[int], offset_scale: float = 0.5, method: str = "default") -> None:
        super().__init__()
        self.self_attn = Attention(dim, num_heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn = MSDeformableAttention(dim, num_heads, num_levels, num_points, offset_scale, method)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, ffn_dim, nn.ReLU, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, reference: torch.Tensor, memory: torch.Tensor,
                shapes: Sequence[tuple[int, int]], attn_mask: torch.Tensor | None) -> torch.Tensor:
        with_pos = queries + query_pos
        queries = self.norm1(queries + self.dropout(self.self_attn(with_pos, with_pos, queries, attn_mask=attn_mask)))
        attended = self.cross_attn(queries + query_pos, reference, memory, shapes)
        queries = self.norm2(queries + self.dropout(attended))
        return self.norm3(queries + self.mlp(queries))


class Decoder(nn.Module):
    """The decoder layers with their class and box heads (one each per layer, for the auxiliary losses).

    Args:
        num_classes: ``K`` (sigmoid scores, no "no object" column).
        dim, num_heads, ffn_dim, dropout, num_layers: width (256), heads (8), FFN width (1024), dropout (0),
            depth (6; 3 in the R18 model).
        num_levels, num_points, offset_scale, method: of the deformable cross-attention (3, 4 per level, 0.5,
            bilinear; ``MSDeformableAttention``).
    """

    def __init__(self, num_classes: int, dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.0, num_layers: int = 6, num_levels: int = 3, num_points: int | Sequence[int] = 4,
                 offset_scale: float = 0.5, method: str = "default") -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(dim, num_heads, ffn_dim, dropout, num_levels, num_points, offset_scale,
                                                 method)
                                    for _ in range(num_layers))
        self.query_pos_head = BoxHead(4, 2 * dim, dim, num_layers=2)
        self.class_heads = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(num_layers))
        self.box_heads = nn.ModuleList(BoxHead(dim, dim, 4, 3) for _ in range(num_layers))

    def forward(self, queries: torch.Tensor, reference_logits: torch.Tensor, memory: torch.Tensor,
                shapes: Sequence[tuple[int, int]], attn_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode.

        Args:
            queries: ``[B, Q, C]`` content queries.
            reference_logits: ``[B, Q, 4]`` initial reference boxes, ``logit(cxcywh)`` (detached).
            memory: ``[B, S, C]`` the flattened maps.
            shapes: their ``(H, W)``.
            attn_mask: ``[Q, Q]`` bool, True = may attend (the denoising groups), or None.

        Returns:
            ``logits [L, B, Q, K]`` and ``boxes [L, B, Q, 4]`` (normalised cxcywh) of every layer.
        """
        reference = reference_logits.sigmoid()
        logits, boxes = [], []
        for layer, class_head, box_head in zip(self.layers, self.class_heads, self.box_heads):
            queries = layer(queries, self.query_pos_head(reference), reference, memory, shapes, attn_mask)
            refined = (box_head(queries) + inverse_sigmoid(reference)).sigmoid()
            logits.append(class_head(queries))
            boxes.append(refined)
            reference = refined.detach()
        return torch.stack(logits), torch.stack(boxes)
