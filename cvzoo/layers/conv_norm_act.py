"""Conv -> norm -> activation, the unit almost every CNN of the notes is made of."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` without dropping more than 10%.

    MobileNet v2 (Sandler et al., 2018) rounds every width-scaled channel count this way so that
    kernels stay vectorisable; EfficientNet and the YOLO widths follow the same rule.
    """
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvNormAct(nn.Sequential):
    """``Conv2d(bias=False when normed) -> norm -> act``; ``padding`` defaults to "same" for odd kernels.

    Children are named ``conv``, ``bn`` and ``act`` (``bn`` and ``act`` absent when disabled), so state
    dicts read ``...conv.weight``, ``...bn.running_mean``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        inplace: bool | None = True,
        bias: bool | None = None,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[tuple[str, nn.Module]] = [
            (
                "conv",
                nn.Conv2d(
                    in_channels, out_channels, kernel_size, stride, padding,
                    dilation=dilation, groups=groups, bias=bias,
                ),
            )
        ]
        if norm_layer is not None:
            layers.append(("bn", norm_layer(out_channels)))
        if act_layer is not None:
            layers.append(("act", act_layer(inplace=inplace) if inplace is not None else act_layer()))
        super().__init__(OrderedDict(layers))
        self.in_channels = in_channels
        self.out_channels = out_channels
