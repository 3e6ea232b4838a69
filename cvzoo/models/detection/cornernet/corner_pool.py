"""Corner pooling (CornerNet, Law & Deng 2018, Sec. 3.4) and the corner pooling module (Fig. 7).

A box's top-left corner usually lies outside the object: no local evidence says "a corner is here".
Top-left corner pooling looks right along the row for the object's top boundary and down along the column
for its left boundary: at ``(i, j)`` it adds ``max_{k >= i} f_t[k, j]`` (everything below) and
``max_{l >= j} f_l[i, l]`` (everything to the right). Bottom-right pooling mirrors it (everything above,
everything to the left).

A suffix maximum is a reversed ``torch.cummax``, but ONNX has no cumulative-max operator. While a graph
is traced for export ``suffix_max`` computes it by doubling instead: after the step with shift ``k`` every
position holds the maximum of the next ``2k`` values, so ``ceil(log2 n)`` element-wise maxima of shifted
slices suffice, plain Slice / Max / Concat nodes that export and run everywhere. Both give exactly the same
values (a maximum does not round); in eager mode ``cummax`` is used because the doubling is 5-7x slower
on a CPU, forward + backward (benchmarks/bench_corner_pool.py: 5.5x on [8, 128, 64, 64] maps, 7.3x on
[8, 32, 32, 32], 2 threads). tests/models/detection/test_cornernet_parts.py checks both against a direct
loop.
"""

from __future__ import annotations

import torch
from torch import nn


def suffix_max(x: torch.Tensor, dim: int, doubling: bool | None = None) -> torch.Tensor:
    """``out[..., i, ...] = max(x[..., i:, ...])`` along ``dim``.

    ``doubling`` None: by doubling while tracing (ONNX export), else a reversed ``torch.cummax`` (see the
    module docstring); True / False force one.
    """
    if doubling is None:
        doubling = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not doubling:
        return x.flip(dim).cummax(dim).values.flip(dim)
    # The number of steps is fixed when traced: the exported graph takes the traced input size, as YOLO's.
    size = int(x.shape[dim])
    shift = 1
    while shift < size:
        head = torch.maximum(x.narrow(dim, 0, size - shift), x.narrow(dim, shift, size - shift))
        # The last ``shift`` positions already hold the maximum of everything after them.
        x = torch.cat((head, x.narrow(dim, size - shift, shift)), dim=dim)
        shift *= 2
    return x


def prefix_max(x: torch.Tensor, dim: int, doubling: bool | None = None) -> torch.Tensor:
    """``out[..., i, ...] = max(x[..., :i + 1, ...])`` along ``dim`` (``doubling`` as in :func:`suffix_max`)."""
    if doubling is None:
        doubling = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    if not doubling:
        return x.cummax(dim).values
    return suffix_max(x.flip(dim), dim, doubling=True).flip(dim)


def top_left_pool(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """Top-left corner pooling of ``[B, C, H, W]`` maps: max of ``vertical`` below (rows ``>= i``) plus max
    of ``horizontal`` to the right (columns ``>= j``)."""
    return suffix_max(vertical, -2) + suffix_max(horizontal, -1)


def bottom_right_pool(vertical: torch.Tensor, horizontal: torch.Tensor) -> torch.Tensor:
    """Bottom-right corner pooling: max of ``vertical`` above (rows ``<= i``) plus max of ``horizontal`` to
    the left (columns ``<= j``)."""
    return prefix_max(vertical, -2) + prefix_max(horizontal, -1)


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, relu: bool = True) -> nn.Sequential:
    """``kernel_size`` conv (same padding, no bias) + BN (+ ReLU)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class CornerPoolModule(nn.Module):
    """The corner pooling module of CornerNet's prediction module (Fig. 7).

    Two 3x3 conv-BN-ReLU branches (``pool_channels``) are corner-pooled and summed, a 3x3 conv-BN maps
    the sum back to ``channels`` and is added to a 1x1 conv-BN projection of the input (a residual
    connection, as in a residual block), then ReLU and a 3x3 conv-BN-ReLU.

    Args:
        channels: input and output channels (256 in the paper).
        pool_channels: channels of the pooled branches (128 in the paper).
        corner: ``"top_left"`` or ``"bottom_right"``.
    """

    def __init__(self, channels: int, pool_channels: int, corner: str) -> None:
        super().__init__()
        if corner not in ("top_left", "bottom_right"):
            raise ValueError(f"CornerPoolModule: corner must be 'top_left' or 'bottom_right', got {corner!r}")
        self.pool = top_left_pool if corner == "top_left" else bottom_right_pool
        self.vertical = conv_bn(channels, pool_channels, 3)
        self.horizontal = conv_bn(channels, pool_channels, 3)
        self.merge = conv_bn(pool_channels, channels, 3, relu=False)
        self.skip = conv_bn(channels, channels, 1, relu=False)
        self.relu = nn.ReLU(inplace=True)
        self.out = conv_bn(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(self.vertical(x), self.horizontal(x))
        return self.out(self.relu(self.merge(pooled) + self.skip(x)))
