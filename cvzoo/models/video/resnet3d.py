"""18-layer video ResNets of Tran et al. (2018), "A Closer Look at Spatiotemporal Convolutions for Action
Recognition": R3D (3-D convolutions everywhere), MC3 (3-D in the first stage, 2-D above: "mixed
convolutions") and R(2+1)D (each 3x3x3 convolution factorised into a 1x3x3 spatial one, BN + ReLU, then a
3x1x1 temporal one).

Stages and module names follow torchvision's ``video.resnet`` (``stem``, ``layer1``..``layer4``, ``fc``;
inside a block ``conv1`` / ``conv2`` are (conv, BN[, ReLU]) sequences), so a torchvision state dict loads
as it is (same keys and shapes, ``tests/models/video/test_resnet3d_parity.py``).

Input ``[B, C, T, H, W]``; the stem halves H and W, layers 2-4 halve H and W and (but for MC3's 2-D
stages) T; global average pooling over T, H and W before ``fc``.
"""

from __future__ import annotations

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model


def _conv3d(in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int],
            padding: tuple[int, int, int]) -> nn.Conv3d:
    return nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=False)


def spatiotemporal_conv(kind: str, in_channels: int, out_channels: int, mid_channels: int, stride: int) -> nn.Module:
    """The 3x3x3-equivalent convolution of a block.

    ``"3d"``: one 3x3x3 convolution (R3D). ``"2d"``: 1x3x3, no temporal extent nor temporal stride (MC3's
    upper stages). ``"2plus1d"``: 1x3x3 to ``mid_channels``, BN, ReLU, 3x1x1 (R(2+1)D, Tran et al. sec. 3.5,
    with ``mid_channels`` chosen so that the pair has the parameters of one 3x3x3 convolution).
    """
    if kind == "3d":
        return _conv3d(in_channels, out_channels, (3, 3, 3), (stride,) * 3, (1, 1, 1))
    if kind == "2d":
        return _conv3d(in_channels, out_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1))
    if kind == "2plus1d":
        return nn.Sequential(
            _conv3d(in_channels, mid_channels, (1, 3, 3), (1, stride, stride), (0, 1, 1)),
            nn.BatchNorm3d(mid_channels),
            nn.ReLU(inplace=True),
            _conv3d(mid_channels, out_channels, (3, 1, 1), (stride, 1, 1), (1, 0, 0)),
        )
    raise ValueError(f"unknown convolution kind {kind!r}; use '3d', '2d' or '2plus1d'")


def downsample_stride(kind: str, stride: int) -> tuple[int, int, int]:
    """The stride of a block's 1x1x1 shortcut: that of its convolution (no temporal stride for ``"2d"``)."""
    return (1, stride, stride) if kind == "2d" else (stride,) * 3


class BasicBlock3d(nn.Module):
    """Two spatiotemporal convolutions with BN, a ReLU between and after the residual sum (He et al. 2016)."""

    def __init__(self, kind: str, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        # Tran et al. (sec. 3.5): M_i = floor(t d^2 N_{i-1} N_i / (d^2 N_{i-1} + t N_i)), t = 3, d = 3.
        mid = (in_channels * out_channels * 27) // (in_channels * 9 + 3 * out_channels)
        self.conv1 = nn.Sequential(spatiotemporal_conv(kind, in_channels, out_channels, mid, stride),
                                   nn.BatchNorm3d(out_channels), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(spatiotemporal_conv(kind, out_channels, out_channels, mid, 1),
                                   nn.BatchNorm3d(out_channels))
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1, stride=downsample_stride(kind, stride), bias=False),
                nn.BatchNorm3d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        out += shortcut  # in place, as the reference: one feature map less to allocate per block
        return self.relu(out)


def make_stem(kind: str, in_channels: int) -> nn.Sequential:
    """``"3d"``: a 3x7x7 convolution, stride (1, 2, 2). ``"2plus1d"``: 1x7x7 to 45 channels, BN, ReLU, 3x1x1
    (the factorised stem of R(2+1)D). Both end with BN + ReLU at 64 channels."""
    if kind == "2plus1d":
        return nn.Sequential(
            _conv3d(in_channels, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3)), nn.BatchNorm3d(45), nn.ReLU(inplace=True),
            _conv3d(45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0)), nn.BatchNorm3d(64), nn.ReLU(inplace=True),
        )
    return nn.Sequential(_conv3d(in_channels, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3)), nn.BatchNorm3d(64),
                         nn.ReLU(inplace=True))


class VideoResNet(Classifier):
    """A video ResNet of ``BasicBlock3d`` stages.

    Args:
        num_classes: outputs of ``fc`` (400: Kinetics-400); 0 returns the pooled 512-d features.
        in_channels: frame channels.
        stem: ``"3d"`` or ``"2plus1d"``.
        stage_kinds: the convolution kind of each of the four stages.
        layers: blocks per stage.
    """

    def __init__(self, num_classes: int = 400, in_channels: int = 3, stem: str = "3d",
                 stage_kinds: tuple[str, ...] = ("3d",) * 4, layers: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        if len(stage_kinds) != len(layers):
            raise ValueError(f"{len(stage_kinds)} stage kinds for {len(layers)} stages")
        self.stem = make_stem(stem, in_channels)
        self.feature_info = [FeatureInfo(64, 2, "stem")]
        channels, reduction = 64, 2
        self.stage_names: list[str] = []
        for index, (kind, blocks) in enumerate(zip(stage_kinds, layers)):
            width, stride = 64 * 2**index, 1 if index == 0 else 2
            stage = [BasicBlock3d(kind, channels, width, stride)]
            stage += [BasicBlock3d(kind, width, width) for _ in range(blocks - 1)]
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*stage))
            self.stage_names.append(name)
            channels, reduction = width, reduction * stride
            self.feature_info.append(FeatureInfo(width, reduction, name))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.num_features = channels
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)  # the reference's initialisation of the last layer
        nn.init.zeros_(fc.bias)
        return fc

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, T, H, W]`` -> the stem's map and each stage's (``reduction`` is the spatial stride)."""
        if x.ndim != 5:
            raise ValueError(f"video models take clips [B, C, T, H, W], got shape {list(x.shape)}")
        x = self.stem(x)
        features = [x]
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.avgpool(features[-1]).flatten(1)


_VIDEO = {"task": "video", "input_size": (3, 16, 112, 112)}
register_model("r3d_18", VideoResNet, stem="3d", stage_kinds=("3d",) * 4, reference="torchvision:r3d_18", **_VIDEO)
register_model("mc3_18", VideoResNet, stem="3d", stage_kinds=("3d", "2d", "2d", "2d"),
               reference="torchvision:mc3_18", **_VIDEO)
register_model("r2plus1d_18", VideoResNet, stem="2plus1d", stage_kinds=("2plus1d",) * 4,
               reference="torchvision:r2plus1d_18", **_VIDEO)
