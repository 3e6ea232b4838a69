"""Convolution arithmetic: output sizes, receptive fields, dilation patterns and layer costs.

Output-size formulas are the ones PyTorch documents for ``nn.Conv2d``, ``nn.MaxPool2d``/``nn.AvgPool2d``
and ``nn.ConvTranspose2d`` (see also Dumoulin & Visin, "A guide to convolution arithmetic for deep
learning", 2016). Every function works on one spatial dimension; call it per axis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConvArithmeticError",
    "ConvCost",
    "HDCResult",
    "ReceptiveField",
    "compare_conv_costs",
    "conv_output_size",
    "conv_params_flops",
    "conv_transpose_output_size",
    "hdc_check",
    "pool_output_size",
    "receptive_field",
]


class ConvArithmeticError(ValueError):
    """Impossible layer configuration (the message names the offending values)."""


def _check(name: str, value: int, minimum: int) -> int:
    if int(value) != value or value < minimum:
        raise ConvArithmeticError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def conv_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, ceil_mode: bool = False
) -> int:
    """Output length of a convolution (or, with ``ceil_mode``, a pooling window sweep).

    ``out = floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``; with ``ceil_mode``
    the division rounds up, but a last window that would start in the right padding is dropped (the
    rule PyTorch applies to pooling with ``ceil_mode=True``).

    Raises:
        ConvArithmeticError: non-positive sizes, or an output that would be empty.
    """
    size, kernel = _check("size", size, 1), _check("kernel", kernel, 1)
    stride, padding, dilation = _check("stride", stride, 1), _check("padding", padding, 0), _check("dilation", dilation, 1)
    span = size + 2 * padding - dilation * (kernel - 1) - 1  # last valid window start, padded input
    # Floor division (towards -inf, also for a negative span); ceil_mode rounds the quotient up instead.
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out < 1:
        raise ConvArithmeticError(
            f"kernel {kernel} (dilation {dilation}, stride {stride}) does not fit an input of {size} "
            f"with padding {padding}: output size {out}"
        )
    return out


def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = None,
    padding: int = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of ``nn.MaxPool2d`` / ``nn.AvgPool2d`` (``stride`` defaults to ``kernel``).

    Raises:
        ConvArithmeticError: also when ``padding > kernel // 2``, which PyTorch rejects for pooling.
    """
    stride = kernel if stride is None else stride
    if padding > kernel // 2:
        raise ConvArithmeticError(f"pool padding {padding} must be at most half the kernel {kernel}")
    return conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, output_padding: int = 0, dilation: int = 1
) -> int:
    """Output length of ``nn.ConvTranspose2d``:
    ``(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``.

    ``output_padding`` resolves the ambiguity of strided convolution (several input sizes map to the
    same output) and must be smaller than ``stride`` or ``dilation``.
    """
    size, kernel = _check("size", size, 1), _check("kernel", kernel, 1)
    stride, padding, dilation = _check("stride", stride, 1), _check("padding", padding, 0), _check("dilation", dilation, 1)
    output_padding = _check("output_padding", output_padding, 0)
    if output_padding >= max(stride, dilation):
        raise ConvArithmeticError(
            f"output_padding {output_padding} must be smaller than stride {stride} or dilation {dilation}"
        )
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out < 1:
        raise ConvArithmeticError(f"transposed convolution gives a non-positive output size {out}")
    return out


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of the last layer of a stack.

    Attributes:
        size: receptive field r_L in input pixels.
        jump: effective stride (distance in input pixels between neighbouring output units).
        start: input coordinate of the centre of the first output unit (needs paddings; 0-based).
        sizes: r_l after each layer.
        jumps: jump after each layer.
    """

    size: int
    jump: int
    start: float
    sizes: tuple[int, ...]
    jumps: tuple[int, ...]


def receptive_field(layers: Sequence[Sequence[int] | int]) -> ReceptiveField:
    """Compose ``(kernel[, stride[, dilation[, padding]]])`` layers into a receptive field.

    r_l = r_{l-1} + (k_eff_l - 1) * j_{l-1}, j_l = j_{l-1} * s_l, with k_eff = d (k - 1) + 1 and r_0 = j_0 = 1
    (Araujo et al., "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).
    Two stacked 3x3 convs see 5x5 and three see 7x7 (VGG's argument for small kernels).

    Args:
        layers: one entry per conv/pool layer; a bare int is a kernel with stride 1.
    """
    size, jump, start = 1, 1, 0.0
    sizes, jumps = [], []
    for i, layer in enumerate(layers):
        spec = (layer,) if isinstance(layer, int) else tuple(layer)
        if not 1 <= len(spec) <= 4:
            raise ConvArithmeticError(f"layer {i}: expected (kernel[, stride[, dilation[, padding]]]), got {layer!r}")
        kernel, stride, dilation, padding = spec + (1, 1, 1, 0)[len(spec) :]  # stride 1, dilation 1, padding 0
        kernel = _check(f"layer {i} kernel", kernel, 1)
        stride = _check(f"layer {i} stride", stride, 1)
        dilation = _check(f"layer {i} dilation", dilation, 1)
        padding = _check(f"layer {i} padding", padding, 0)
        k_eff = dilation * (kernel - 1) + 1
        size += (k_eff - 1) * jump
        start += ((k_eff - 1) / 2 - padding) * jump
        jump *= stride
        sizes.append(size)
        jumps.append(jump)
    return ReceptiveField(size, jump, start, tuple(sizes), tuple(jumps))


@dataclass(frozen=True)
class HDCResult:
    """Outcome of :func:`hdc_check`.

    Attributes:
        ok: the rates satisfy both HDC conditions.
        max_distances: M_1..M_n, the largest gap between non-zero taps seen by layer i.
        m2: M_2 (compared against the kernel size).
        common_factor: gcd of the rates (> 1 means gridding: the stack only sees a sub-lattice).
        reasons: human-readable failures (empty when ``ok``).
    """

    ok: bool
    max_distances: tuple[int, ...]
    m2: int | None
    common_factor: int
    reasons: tuple[str, ...]


def hdc_check(dilation_rates: Sequence[int], kernel_size: int = 3) -> HDCResult:
    """Hybrid Dilated Convolution rule (Wang et al., "Understanding Convolution for Semantic
    Segmentation", WACV 2018) for a stack of dilated ``kernel_size`` convolutions.

    With M_n = r_n and M_i = max[M_{i+1} - 2 r_i, M_{i+1} - 2 (M_{i+1} - r_i), r_i], the stack covers its
    receptive field without holes when M_2 <= K. Rates sharing a factor > 1 (e.g. [2, 4, 8]) grid no
    matter what, so they are flagged too. A single layer is gap-free only with rate 1.
    Examples: [1, 2, 5] passes; [1, 2, 9] fails (M_2 = 5 > 3).
    """
    rates = [_check("dilation rate", r, 1) for r in dilation_rates]
    kernel_size = _check("kernel_size", kernel_size, 1)
    if not rates:
        raise ConvArithmeticError("hdc_check needs at least one dilation rate")
    distances = [rates[-1]]
    for r in reversed(rates[:-1]):
        m_next = distances[0]
        distances.insert(0, max(m_next - 2 * r, m_next - 2 * (m_next - r), r))
    factor = math.gcd(*rates)
    reasons = []
    m2 = distances[1] if len(rates) > 1 else None
    if m2 is not None and m2 > kernel_size:
        reasons.append(f"M_2 = {m2} > kernel size {kernel_size}: the stack leaves holes")
    if m2 is None and rates[0] > 1:
        reasons.append(f"a single layer with rate {rates[0]} skips pixels")
    if factor > 1:
        reasons.append(f"rates share the common factor {factor} (gridding)")
    return HDCResult(not reasons, tuple(distances), m2, factor, tuple(reasons))


@dataclass(frozen=True)
class ConvCost:
    """Parameters and multiply-accumulates of one layer (or a sum of layers)."""

    params: int
    macs: int

    def __add__(self, other: ConvCost) -> ConvCost:
        return ConvCost(self.params + other.params, self.macs + other.macs)


def conv_params_flops(
    in_channels: int, out_channels: int, kernel: int, groups: int = 1, h: int = 1, w: int = 1, bias: bool = False
) -> ConvCost:
    """Cost of a ``kernel x kernel`` convolution producing an ``h x w`` output map.

    params = out * (in / groups) * k^2 (+ out for the bias); MACs = params_weights * h * w
    (one multiply-accumulate per weight per output position; a bias add is not a MAC).
    """
    in_channels, out_channels = _check("in_channels", in_channels, 1), _check("out_channels", out_channels, 1)
    kernel, groups = _check("kernel", kernel, 1), _check("groups", groups, 1)
    h, w = _check("h", h, 1), _check("w", w, 1)
    if in_channels % groups or out_channels % groups:
        raise ConvArithmeticError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")
    weights = out_channels * (in_channels // groups) * kernel * kernel
    return ConvCost(weights + (out_channels if bias else 0), weights * h * w)


def compare_conv_costs(
    in_channels: int, out_channels: int, kernel: int, h: int, w: int, groups: int = 1, bias: bool = False
) -> dict[str, ConvCost]:
    """Standard vs grouped vs depthwise-separable convolution for the same input/output shapes.

    The depthwise-separable version (MobileNet, Howard et al. 2017) is a ``kernel x kernel`` depthwise
    conv (groups = in_channels) followed by a 1x1 pointwise conv; its cost relative to the standard conv
    is 1/N + 1/k^2 with N = out_channels (without biases).

    Returns:
        ``{"standard", "grouped", "depthwise_separable"}`` -> :class:`ConvCost` (``"grouped"`` uses
        ``groups``; with groups=1 it equals the standard conv).
    """
    standard = conv_params_flops(in_channels, out_channels, kernel, 1, h, w, bias)
    grouped = conv_params_flops(in_channels, out_channels, kernel, groups, h, w, bias)
    depthwise = conv_params_flops(in_channels, in_channels, kernel, in_channels, h, w, bias)
    pointwise = conv_params_flops(in_channels, out_channels, 1, 1, h, w, bias)
    return {"standard": standard, "grouped": grouped, "depthwise_separable": depthwise + pointwise}
