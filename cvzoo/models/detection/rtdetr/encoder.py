"""RT-DETR's hybrid encoder (Zhao et al. 2024, "DETRs Beat YOLOs on Real-time Object Detection", sec. 4.2).

A DETR-style encoder over all the tokens of three maps costs most of a multi-scale DETR's time while the
low-level tokens gain little from global attention (sec. 4.1, variants A-E). RT-DETR decouples the two:

- AIFI (attention-based intra-scale feature interaction): one post-norm transformer encoder layer over the
  top map S5 only, with a fixed 2-D sine-cosine position added to queries and keys (eq. 1);
- CCFM (CNN-based cross-scale feature fusion): a PAN-like top-down then bottom-up pass whose fusion blocks
  are CSP layers of RepVGG blocks (fig. 5), concatenating a map with its resampled neighbour.

All three maps are first projected to the encoder's width by a 1x1 conv + BN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.classification.repvgg import RepVGGBlock
from cvzoo.models.detection.detr.transformer import EncoderLayer


def sincos_position_2d(height: int, width: int, dim: int, temperature: float = 10000.0,
                       device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The fixed 2-D position of a ``height x width`` grid, row-major ``[H W, dim]``: a quarter of the
    channels each for ``sin(y w_i)``, ``cos(y w_i)``, ``sin(x w_i)``, ``cos(x w_i)`` with
    ``w_i = temperature^(-i / (dim / 4))`` (Vaswani et al.'s frequencies, one set per axis; computed in
    float64 as transformers does, then cast)."""
    if dim % 4:
        raise ValueError(f"the 2-D sine-cosine position needs a width divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, dtype=torch.float64, device=device) / quarter)
    rows, columns = torch.meshgrid(torch.arange(height, dtype=torch.float64, device=device),
                                   torch.arange(width, dtype=torch.float64, device=device), indexing="ij")
    y, x = rows.flatten()[:, None] * omega, columns.flatten()[:, None] * omega
    return torch.cat((y.sin(), y.cos(), x.sin(), x.cos()), dim=1).to(dtype)


class AIFI(nn.Module):
    """``layers`` post-norm encoder layers (DETR's, GELU FFN) over one map ``[B, C, H, W]`` -> the same shape."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0, num_layers: int = 1,
                 temperature: float = 10000.0) -> None:
        super().__init__()
        self.temperature = temperature
        self.layers = nn.ModuleList(EncoderLayer(dim, num_heads, ffn_dim, dropout, nn.GELU) for _ in range(num_layers))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = features.shape
        tokens = features.flatten(2).transpose(1, 2)
        pos = sincos_position_2d(height, width, channels, self.temperature, features.device, features.dtype)
        for layer in self.layers:
            tokens = layer(tokens, pos[None], None)
        return tokens.transpose(1, 2).reshape(batch, channels, height, width)


class CSPRepLayer(nn.Module):
    """CCFM's fusion block (fig. 5): two 1x1 conv branches of the concatenated input, one through
    ``num_blocks`` RepVGG blocks (3x3 + 1x1, no identity branch, SiLU), summed; a last 1x1 conv when the
    hidden width differs from the output's.

    Args:
        in_channels: the concatenated input's channels (``2 C``).
        out_channels: the output's (``C``).
        num_blocks: RepVGG blocks (3).
        expansion: hidden width / ``out_channels`` (1.0).
    """

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int = 3, expansion: float = 1.0) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormAct(in_channels, hidden, 1, act_layer=nn.SiLU)
        self.conv2 = ConvNormAct(in_channels, hidden, 1, act_layer=nn.SiLU)
        self.bottlenecks = nn.Sequential(*[RepVGGBlock(hidden, hidden, identity=False, act_layer=nn.SiLU)
                                           for _ in range(num_blocks)])
        self.conv3 = ConvNormAct(hidden, out_channels, 1, act_layer=nn.SiLU) if hidden != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class HybridEncoder(nn.Module):
    """Input projections, AIFI on the chosen levels, CCFM.

    Args:
        in_channels: channels of the backbone maps, finest first (C3, C4, C5).
        dim: the encoder's width (256).
        num_heads, ffn_dim, dropout, num_layers: AIFI's attention heads (8), FFN width (1024), dropout (0)
            and depth (1).
        encode_levels: the levels AIFI runs on (the last, S5).
        num_blocks, expansion: RepVGG blocks per fusion block (3) and its hidden width ratio (1.0; 0.5 in the
            R18 model).
        temperature: of the sine-cosine position.
    """

    def __init__(self, in_channels: Sequence[int], dim: int = 256, num_heads: int = 8, ffn_dim: int = 1024,
                 dropout: float = 0.0, num_layers: int = 1, encode_levels: Sequence[int] = (2,), num_blocks: int = 3,
                 expansion: float = 1.0, temperature: float = 10000.0) -> None:
        super().__init__()
        levels = len(in_channels)
        self.encode_levels = tuple(encode_levels)
        self.input_proj = nn.ModuleList(ConvNormAct(c, dim, 1, act_layer=None) for c in in_channels)
        self.aifi = nn.ModuleList(AIFI(dim, num_heads, ffn_dim, dropout, num_layers, temperature)
                                  for _ in self.encode_levels)
        self.lateral_convs = nn.ModuleList(ConvNormAct(dim, dim, 1, act_layer=nn.SiLU) for _ in range(levels - 1))
        self.fpn_blocks = nn.ModuleList(CSPRepLayer(2 * dim, dim, num_blocks, expansion) for _ in range(levels - 1))
        self.downsample_convs = nn.ModuleList(ConvNormAct(dim, dim, 3, 2, act_layer=nn.SiLU) for _ in range(levels - 1))
        self.pan_blocks = nn.ModuleList(CSPRepLayer(2 * dim, dim, num_blocks, expansion) for _ in range(levels - 1))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Backbone maps, finest first -> fused maps of ``dim`` channels at the same strides."""
        maps = [proj(x) for proj, x in zip(self.input_proj, features)]
        for level, aifi in zip(self.encode_levels, self.aifi):
            maps[level] = aifi(maps[level])
        # Top-down (fig. 4, CCFM): the coarser map, 1x1-convolved (that output is the level's top-down map),
        # upsampled x2 and concatenated with the finer one.
        top_down = [maps[-1]]
        for index, (lateral, block) in enumerate(zip(self.lateral_convs, self.fpn_blocks)):
            top_down[-1] = lateral(top_down[-1])
            upsampled = F.interpolate(top_down[-1], scale_factor=2.0, mode="nearest")
            top_down.append(block(torch.cat((upsampled, maps[-2 - index]), dim=1)))
        top_down.reverse()
        # Bottom-up: the finer output, strided 3x3, concatenated with the next coarser top-down map.
        outputs = [top_down[0]]
        for index, (down, block) in enumerate(zip(self.downsample_convs, self.pan_blocks)):
            outputs.append(block(torch.cat((down(outputs[-1]), top_down[index + 1]), dim=1)))
        return outputs
