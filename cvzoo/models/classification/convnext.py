"""ConvNeXt (Liu et al., 2022, "A ConvNet for the 2020s"), torchvision-compatible.

A ResNet modernised step by step towards the Swin Transformer's design (§2): a 4x4 stride-4 "patchify"
stem, stage depths 3:3:9:3, a depthwise 7x7 conv in each block (the analogue of window attention),
an inverted bottleneck MLP (``C -> 4C -> C``) with GELU, a single LayerNorm per block, separate
downsampling layers (LayerNorm2d + 2x2 stride-2 conv), layer scale and stochastic depth.

Block: ``x + drop_path(gamma * fc2(gelu(fc1(norm(dwconv7x7(x))))))``; the norm and the MLP run on
channels-last tensors, where ``nn.LayerNorm`` and ``nn.Linear`` act on the channels directly. The layer
scale ``gamma`` (Touvron et al., 2021, "Going deeper with image transformers") starts at 1e-6, so each
block begins close to the identity.

Features: the four stage outputs at reductions 4, 8, 16, 32. Checkpoints in torchvision's and timm's
layouts load through the registered remaps.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers.attention_blocks import Mlp
from cvzoo.layers.drop_path import DropPath
from cvzoo.layers.layer_norm import LayerNorm2d
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 -> LayerNorm -> Linear(C, 4C) -> GELU -> Linear(4C, C) -> layer scale, plus input.

    Args:
        dim: channels.
        drop_path: stochastic-depth probability of the residual branch.
        layer_scale_init: initial value of the per-channel scale ``gamma`` (0 disables layer scale).
    """

    def __init__(self, dim: int, drop_path: float = 0.0, layer_scale_init: float = 1e-6) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim, nn.GELU)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init)) if layer_scale_init > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_dw(x).permute(0, 2, 3, 1)  # [B, H, W, C]
        out = self.mlp(self.norm(out))
        if self.gamma is not None:
            out = out * self.gamma
        return x + self.drop_path(out.permute(0, 3, 1, 2))


class ConvNeXtStage(nn.Module):
    """Optional downsampling (LayerNorm2d + 2x2 stride-2 conv), then ``depth`` blocks."""

    def __init__(
        self, in_channels: int, out_channels: int, depth: int, drop_path: Sequence[float], layer_scale_init: float,
    ) -> None:
        super().__init__()
        self.downsample: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.downsample = nn.Sequential(OrderedDict(
                norm=LayerNorm2d(in_channels, eps=1e-6),
                conv=nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2),
            ))
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_channels, rate, layer_scale_init) for rate in drop_path])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXt(Classifier):
    """ConvNeXt for classification.

    Args:
        depths: blocks per stage.
        dims: channels per stage.
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled, normalised features.
        in_channels: image channels.
        drop_path_rate: stochastic depth, linear from 0 (first block) to this value (last block).
        layer_scale_init: initial layer-scale value (1e-6 in the paper).
    """

    classifier_name = "head"

    def __init__(
        self,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_path_rate: float = 0.1,
        layer_scale_init: float = 1e-6,
    ) -> None:
        super().__init__()
        if len(depths) != len(dims):
            raise ValueError(f"depths {tuple(depths)} and dims {tuple(dims)} differ in length")
        self.stem = nn.Sequential(OrderedDict(
            conv=nn.Conv2d(in_channels, dims[0], kernel_size=4, stride=4),
            norm=LayerNorm2d(dims[0], eps=1e-6),
        ))
        total = sum(depths)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.Sequential()
        self.feature_info = []
        previous = dims[0]
        for index, (depth, dim) in enumerate(zip(depths, dims)):
            first = sum(depths[:index])
            self.stages.append(ConvNeXtStage(previous, dim, depth, rates[first:first + depth], layer_scale_init))
            self.feature_info.append(FeatureInfo(dim, 4 * 2**index, f"stages.{index}"))
            previous = dim
        self.num_features = dims[-1]
        # Head: global average pool -> LayerNorm -> Linear (§2.6 puts a LayerNorm before the classifier).
        self.norm = nn.LayerNorm(self.num_features, eps=1e-6)
        self.num_classes = num_classes
        self.head: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C_in, H, W]`` -> four maps at reductions 4, 8, 16, 32."""
        x = self.stem(x)
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.norm(features[-1].mean(dim=(2, 3)))


_TORCHVISION_KEY = re.compile(r"^features\.(\d+)\.(.+)$")
# Children of torchvision's stem and downsampling Sequentials, and positions inside CNBlock.block
# (conv, permute, norm, linear, GELU, linear, permute).
_TORCHVISION_STEM = {"0.": "conv.", "1.": "norm."}
_TORCHVISION_DOWNSAMPLE = {"0.": "norm.", "1.": "conv."}
_TORCHVISION_BLOCK = {"block.0.": "conv_dw.", "block.2.": "norm.", "block.3.": "mlp.fc1.", "block.5.": "mlp.fc2."}
_TORCHVISION_HEAD = {"classifier.0.": "norm.", "classifier.2.": "head."}
_TIMM_RENAMES = {"stem.0.": "stem.conv.", "stem.1.": "stem.norm.", "head.norm.": "norm.", "head.fc.": "head."}
_TIMM_DOWNSAMPLE = re.compile(r"^stages\.(\d+)\.downsample\.([01])\.")


def _swap_prefix(key: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def convnext_from_torchvision(state: StateDict) -> StateDict:
    """torchvision ``ConvNeXt`` keys -> cvzoo keys; ``layer_scale`` ``[C, 1, 1]`` becomes ``gamma`` ``[C]``.

    torchvision numbers ``features`` as [stem, stage 1, downsample, stage 2, ...]; cvzoo puts each
    downsampling layer at the start of its stage. Keys of other layouts pass through unchanged.
    """
    converted = {}
    for key, value in state.items():
        match = _TORCHVISION_KEY.match(key)
        if match:
            index, rest = int(match.group(1)), match.group(2)
            if index == 0:
                key = "stem." + _swap_prefix(rest, _TORCHVISION_STEM)
            elif index % 2 == 0:
                key = f"stages.{index // 2}.downsample." + _swap_prefix(rest, _TORCHVISION_DOWNSAMPLE)
            else:
                block, _, part = rest.partition(".")
                if part == "layer_scale":
                    part, value = "gamma", value.flatten()
                key = f"stages.{index // 2}.blocks.{block}." + _swap_prefix(part, _TORCHVISION_BLOCK)
        else:
            key = _swap_prefix(key, _TORCHVISION_HEAD)
        converted[key] = value
    return converted


def convnext_from_timm(state: StateDict) -> StateDict:
    """timm ``ConvNeXt`` keys -> cvzoo keys (numbered stem/downsample children, ``head.norm``/``head.fc``)."""
    converted = {}
    for key, value in state.items():
        match = _TIMM_DOWNSAMPLE.match(key)
        if match:
            child = "norm." if match.group(2) == "0" else "conv."
            key = f"stages.{match.group(1)}.downsample.{child}" + key[match.end():]
        else:
            key = _swap_prefix(key, _TIMM_RENAMES)
        converted[key] = value
    return converted


register_remap("convnext", convnext_from_torchvision, name="convnext:torchvision")
register_remap("convnext", convnext_from_timm, name="convnext:timm")

register_model("convnext_tiny", ConvNeXt, depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), drop_path_rate=0.1,
               reference="torchvision:convnext_tiny")
register_model("convnext_small", ConvNeXt, depths=(3, 3, 27, 3), dims=(96, 192, 384, 768), drop_path_rate=0.4,
               reference="torchvision:convnext_small")
register_model("convnext_base", ConvNeXt, depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), drop_path_rate=0.5,
               reference="torchvision:convnext_base")
register_model("convnext_large", ConvNeXt, depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), drop_path_rate=0.5,
               reference="torchvision:convnext_large")
