"""MobileViT (Mehta & Rastegari, 2022, "MobileViT: Light-weight, General-purpose, and Mobile-friendly
Vision Transformer"), compatible with timm's ``mobilevit_xxs`` / ``mobilevit_xs`` / ``mobilevit_s``.

A MobileNet v2 backbone (inverted residual "MV2" blocks, Sandler et al., 2018) in which the last three
stages end with a MobileViT block that models global context (§3.1, Fig. 1b):

    local representation   3x3 conv (local spatial mixing) -> 1x1 conv to the transformer width d
    unfold                 cut the map into 2x2 patches; pixel ``p`` of every patch forms one sequence
                           of ``N = HW / 4`` tokens, so each of the 4 sequences spans the whole image
    global representation  L transformer blocks on each sequence, then LayerNorm
    fold                   put the tokens back at their pixels
    fusion                 1x1 conv back to C, concatenate with the block input, 3x3 conv to C

Because a 3x3 conv already mixed each pixel with its neighbours, attending between pixels at the same
position of every patch gives every pixel an image-wide receptive field (§3.1, Fig. 4). Maps whose
sides are not multiples of the patch size are resized (bilinear) to the next multiple for the
transformer and back afterwards, as timm does, so any input size works.

Features (timm's choice): the outputs of stages 0-3 at reductions 2, 4, 8, 16, and the final 1x1
expansion conv (``final_conv``, after stage 4) at reduction 32. timm checkpoints load through the
registered remap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

from cvzoo.layers.attention_blocks import TransformerBlock
from cvzoo.layers.conv_norm_act import ConvNormAct, make_divisible
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

ConvBNSiLU = partial(ConvNormAct, act_layer=nn.SiLU)


class InvertedResidual(nn.Module):
    """MV2 block: 1x1 expand -> 3x3 depthwise (strided) -> 1x1 linear projection, plus the input when
    the shape is unchanged (Sandler et al., 2018, Table 1)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: float) -> None:
        super().__init__()
        hidden = make_divisible(in_channels * expansion)
        self.expand = ConvBNSiLU(in_channels, hidden, 1)
        self.depthwise = ConvBNSiLU(hidden, hidden, 3, stride=stride, groups=hidden)
        self.project = ConvNormAct(hidden, out_channels, 1, act_layer=None)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileViTBlock(nn.Module):
    """Local conv -> unfold into patch sequences -> transformer -> fold -> fusion with the input.

    Args:
        channels: input and output channels ``C``.
        transformer_dim: token width ``d``.
        depth: transformer blocks ``L``.
        num_heads: attention heads (4).
        patch_size: patch side (2).
        mlp_ratio: transformer MLP width relative to ``d`` (2).
        drop_path: stochastic depth inside the transformer blocks.
    """

    def __init__(
        self, channels: int, transformer_dim: int, depth: int, num_heads: int = 4, patch_size: int = 2,
        mlp_ratio: float = 2.0, drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.local_conv = ConvBNSiLU(channels, channels, 3)
        self.project_in = nn.Conv2d(channels, transformer_dim, 1, bias=False)
        self.transformer = nn.Sequential(*[
            TransformerBlock(
                transformer_dim, num_heads, mlp_ratio, qkv_bias=True, drop_path=drop_path, act_layer=nn.SiLU,
                norm_layer=nn.LayerNorm,
            )
            for _ in range(depth)
        ])
        self.norm = nn.LayerNorm(transformer_dim)
        self.project_out = ConvBNSiLU(transformer_dim, channels, 1)
        self.fusion = ConvBNSiLU(2 * channels, channels, 3)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d, H, W]`` -> ``[B, P, N, d]``: ``P = p*p`` pixel positions, ``N`` patches each."""
        batch, dim, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, dim, height // p, p, width // p, p)
        return x.permute(0, 3, 5, 2, 4, 1).reshape(batch, p * p, -1, dim)

    def fold(self, tokens: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Inverse of ``unfold``: ``[B, P, N, d]`` -> ``[B, d, H, W]``."""
        batch, dim, p = tokens.shape[0], tokens.shape[-1], self.patch_size
        x = tokens.reshape(batch, p, p, height // p, width // p, dim)
        return x.permute(0, 5, 3, 1, 4, 2).reshape(batch, dim, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.project_in(self.local_conv(x))
        height, width = x.shape[-2:]
        p = self.patch_size
        target = (math.ceil(height / p) * p, math.ceil(width / p) * p)
        resized = target != (height, width)
        if resized:
            x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
        tokens = self.norm(self.transformer(self.unfold(x)))
        x = self.fold(tokens, *target)
        if resized:
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
        return self.fusion(torch.cat([shortcut, self.project_out(x)], dim=1))


class MobileViT(Classifier):
    """MobileViT (v1).

    Args:
        channels: output channels of the five stages (stage 0 at stride 2 ... stage 4 at stride 32).
        transformer_dims: token width ``d`` of the MobileViT blocks of stages 2, 3, 4.
        transformer_depths: transformer blocks ``L`` in those MobileViT blocks (2, 4, 3 in the paper).
        expansion: MV2 expansion factor (4; 2 for XXS).
        num_features: channels of the final 1x1 conv before pooling.
        stem_channels: channels of the 3x3 stride-2 stem.
        num_classes: classifier outputs; 0 makes ``forward`` return pooled ``[B, num_features]``.
        in_channels: image channels.
        drop_path_rate: stochastic depth of the transformer blocks.
        drop_rate: dropout before the classifier.
    """

    classifier_name = "head"

    def __init__(
        self,
        channels: Sequence[int] = (32, 64, 96, 128, 160),
        transformer_dims: Sequence[int] = (144, 192, 240),
        transformer_depths: Sequence[int] = (2, 4, 3),
        expansion: float = 4.0,
        num_features: int = 640,
        stem_channels: int = 16,
        num_classes: int = 1000,
        in_channels: int = 3,
        drop_path_rate: float = 0.0,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != 5 or len(transformer_dims) != 3 or len(transformer_depths) != 3:
            raise ValueError("MobileViT needs 5 stage widths and 3 transformer widths and depths")
        self.stem = ConvBNSiLU(in_channels, stem_channels, 3, stride=2)
        mv2 = partial(InvertedResidual, expansion=expansion)
        stages = [
            nn.Sequential(mv2(stem_channels, channels[0], 1)),
            nn.Sequential(mv2(channels[0], channels[1], 2), *[mv2(channels[1], channels[1], 1) for _ in range(2)]),
        ]
        for index, (dim, depth) in enumerate(zip(transformer_dims, transformer_depths)):
            stages.append(nn.Sequential(
                mv2(channels[index + 1], channels[index + 2], 2),
                MobileViTBlock(channels[index + 2], dim, depth, drop_path=drop_path_rate),
            ))
        self.stages = nn.Sequential(*stages)
        self.final_conv = ConvBNSiLU(channels[4], num_features, 1)
        self.feature_info = [FeatureInfo(channels[i], 2 ** (i + 1), f"stages.{i}") for i in range(4)]
        self.feature_info.append(FeatureInfo(num_features, 32, "final_conv"))
        self.num_features = num_features
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.head: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.LayerNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C_in, H, W]`` -> maps at reductions 2, 4, 8, 16 (stages 0-3) and 32 (``final_conv``)."""
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < 4:
                features.append(x)
        features.append(self.final_conv(x))
        return features


_TIMM_RENAMES = {
    "conv1_1x1.": "expand.",
    "conv2_kxk.": "depthwise.",
    "conv3_1x1.": "project.",
    "conv_kxk.": "local_conv.",
    "conv_1x1.": "project_in.",
    "conv_proj.": "project_out.",
    "conv_fusion.": "fusion.",
}
_TIMM_BLOCK = re.compile(r"^(stages\.\d+\.\d+\.)([a-z0-9_]+\.)(.*)$")


def mobilevit_from_timm(state: StateDict) -> StateDict:
    """timm ``ByobNet`` MobileViT keys (``conv1_1x1``, ``conv_kxk``, ``head.fc``, ...) -> cvzoo keys."""
    converted = {}
    for key, value in state.items():
        match = _TIMM_BLOCK.match(key)
        if match and match.group(2) in _TIMM_RENAMES:
            key = match.group(1) + _TIMM_RENAMES[match.group(2)] + match.group(3)
        elif key.startswith("head.fc."):
            key = "head." + key[len("head.fc."):]
        converted[key] = value
    return converted


register_remap("mobilevit", mobilevit_from_timm, name="mobilevit:timm")

register_model(
    "mobilevit_xxs", MobileViT, channels=(16, 24, 48, 64, 80), transformer_dims=(64, 80, 96), expansion=2.0,
    num_features=320, reference="timm:mobilevit_xxs", input_size=(3, 256, 256),
)
register_model(
    "mobilevit_xs", MobileViT, channels=(32, 48, 64, 80, 96), transformer_dims=(96, 120, 144), num_features=384,
    reference="timm:mobilevit_xs", input_size=(3, 256, 256),
)
register_model(
    "mobilevit_s", MobileViT, channels=(32, 64, 96, 128, 160), transformer_dims=(144, 192, 240), num_features=640,
    reference="timm:mobilevit_s", input_size=(3, 256, 256),
)
