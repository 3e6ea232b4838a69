"""Channel and spatial attention modules that recalibrate a feature map ``[B, C, H, W]``.

    SqueezeExcite        Hu et al., 2018, "Squeeze-and-Excitation Networks"
    CBAM                 Woo et al., 2018, "CBAM: Convolutional Block Attention Module"
    StyleRecalibration   Lee et al., 2019, "SRM: A Style-based Recalibration Module for CNNs"

Each returns a tensor of the input's shape: the input scaled by a gate in ``(0, 1)`` per channel
(SE, SRM), or per channel and then per position (CBAM). ``create_attention("se" | "cbam" | "srm",
channels)`` builds one by name, which is how the attention ResNets pick theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

ActLayer = Callable[[], nn.Module]


class SqueezeExcite(nn.Module):
    """Squeeze (global average pool) -> excite (two 1x1 convs) -> gate that scales each channel.

    The children are named ``fc1`` / ``fc2`` like torchvision's and timm's SE modules, so the SE weights
    of MobileNet v3, EfficientNet and SE-ResNet checkpoints load under the same names.

    Args:
        channels: input (and output) channels.
        squeeze_channels: width of the bottleneck; default ``max(1, channels // reduction)``.
        reduction: the paper's ratio ``r`` (16 in Hu et al., 2018, Table 5), used when
            ``squeeze_channels`` is not given.
        act_layer: activation between the two convs (ReLU in the paper; SiLU in EfficientNet).
        gate_layer: the gate (sigmoid in the paper; hard-sigmoid in MobileNet v3).
    """

    def __init__(
        self,
        channels: int,
        squeeze_channels: int | None = None,
        reduction: int = 16,
        act_layer: ActLayer = nn.ReLU,
        gate_layer: ActLayer = nn.Sigmoid,
    ) -> None:
        super().__init__()
        squeeze_channels = squeeze_channels or max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(squeezed))))


class ChannelAttention(nn.Module):
    """CBAM's channel gate: a shared MLP over the average- and max-pooled descriptors, summed.

    Woo et al. (2018, §3, Eq. 2) show that adding max pooling to SE's average pooling helps; both
    descriptors go through the same two-layer MLP (as 1x1 convs) before the sigmoid.
    """

    def __init__(self, channels: int, reduction: int = 16, act_layer: ActLayer = nn.ReLU) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.act = act_layer()
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def _mlp(self, descriptor: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(descriptor)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        average = x.mean((2, 3), keepdim=True)
        maximum = x.amax((2, 3), keepdim=True)
        return x * torch.sigmoid(self._mlp(average) + self._mlp(maximum))


class SpatialAttention(nn.Module):
    """CBAM's spatial gate: a 7x7 conv over the channel-wise mean and max maps (Woo et al., 2018, Eq. 3)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(descriptor))


class CBAM(nn.Module):
    """Channel attention followed by spatial attention (the sequential, channel-first order that
    Woo et al., 2018, Table 3 found best).

    Args:
        channels: input (and output) channels.
        reduction: MLP reduction ratio of the channel gate (16 in the paper).
        kernel_size: size of the spatial gate's conv (7 in the paper, Table 2).
    """

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class StyleRecalibration(nn.Module):
    """SRM: style pooling (per-channel mean and standard deviation) -> style integration
    (a channel-wise fully connected layer, BN, sigmoid) -> per-channel gate (Lee et al., 2019, §3).

    The channel-wise fully connected layer gives each channel its own two weights for its (mean, std)
    pair, i.e. a grouped 1-d convolution with ``groups=channels`` and kernel size 2. It starts at zero
    as in the authors' code, so every gate starts at ``sigmoid(bn.bias) = 0.5``. The standard deviation
    is the population one (``unbiased=False``) so that a 1x1 map gives 0 rather than NaN.

    Args:
        channels: input (and output) channels.
        eps: added to the variance before the square root.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.cfc = nn.Conv1d(channels, channels, kernel_size=2, groups=channels, bias=False)
        self.bn = nn.BatchNorm1d(channels)
        nn.init.zeros_(self.cfc.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(2)  # [B, C, H*W]
        mean = flat.mean(2)
        std = (flat.var(2, unbiased=False) + self.eps).sqrt()
        style = torch.stack([mean, std], dim=2)  # [B, C, 2]
        gate = torch.sigmoid(self.bn(self.cfc(style)))  # [B, C, 1]
        return x * gate.unsqueeze(-1)


_ATTENTION: dict[str, Callable[..., nn.Module]] = {
    "se": SqueezeExcite,
    "cbam": CBAM,
    "srm": StyleRecalibration,
}


def create_attention(kind: str, channels: int, **kwargs: Any) -> nn.Module:
    """Build the attention module ``kind`` ("se", "cbam" or "srm") for ``channels`` channels.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in _ATTENTION:
        raise ValueError(f"unknown attention {kind!r}; choose from {', '.join(sorted(_ATTENTION))}")
    return _ATTENTION[kind](channels, **kwargs)
