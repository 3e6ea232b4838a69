"""EfficientNet B0-B7 (Tan & Le, 2019, "EfficientNet: Rethinking Model Scaling for CNNs").

B0 is a searched stack of MBConv blocks (MobileNet v2's inverted residual with squeeze-and-excitation
and SiLU/swish). B1-B7 scale it by *compound scaling* (§3.3): depth by ``alpha ** phi``, width by
``beta ** phi`` and resolution by ``gamma ** phi`` with ``alpha * beta**2 * gamma**2 ~ 2``, so every
step of ``phi`` about doubles the FLOPs; the per-variant (width, depth, resolution, dropout) values
below are the published ones. Stochastic depth (Huang et al., 2016) drops each residual branch with a
probability growing linearly from 0 to ``drop_path_rate`` over the blocks.

torchvision-compatible: B0-B4 use PyTorch's BN defaults, B5-B7 eps 0.001 and momentum 0.01 (their
weights were ported from TensorFlow); ``features.S.J.block.M`` checkpoints load through the
``efficientnet`` remap. ``StageSpec.block`` lets EfficientNet v2 (``efficientnet_v2.py``) reuse the
model with Fused-MBConv stages.

Stages (``feature_info``): the last stage output at strides 2, 4, 8 and 16, then ``head_conv`` at 32.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, make_divisible
from cvzoo.layers.attention import SqueezeExcite
from cvzoo.models.classification.base import Classifier
from cvzoo.models.classification.mobilenet_v2 import (
    InvertedResidual,
    apply_mapping,
    feature_points,
    rename_conv_norm,
    rename_timm_block,
    rename_torchvision_block,
    timm_block_indices,
    timm_stem_head_mapping,
)
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

NormLayer = Callable[[int], nn.Module]


class MBConv(InvertedResidual):
    """Mobile inverted bottleneck with SE (Tan & Le, 2019, after Sandler et al., 2018 and Tan et al.,
    2019 "MnasNet"): SiLU activations, SE squeezed to a quarter of the *block input* width.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: depthwise kernel size (3 or 5).
        stride: depthwise stride.
        expand_ratio: hidden width = ``make_divisible(in_channels * expand_ratio)``.
        norm_layer: normalisation constructor.
        drop_path_rate: stochastic depth probability of this block.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: float,
        norm_layer: NormLayer = nn.BatchNorm2d,
        drop_path_rate: float = 0.0,
    ) -> None:
        se_layer = partial(SqueezeExcite, squeeze_channels=max(1, in_channels // 4), act_layer=nn.SiLU)
        super().__init__(
            in_channels, out_channels, make_divisible(in_channels * expand_ratio, 8), stride, kernel_size,
            act_layer=nn.SiLU, se_layer=se_layer, norm_layer=norm_layer, drop_path_rate=drop_path_rate,
        )


@dataclass(frozen=True)
class StageSpec:
    """One row of the architecture table: ``depth`` blocks, the first with ``stride`` and the channel change."""

    expand_ratio: float
    kernel_size: int
    stride: int
    in_channels: int
    out_channels: int
    depth: int
    block: Callable[..., nn.Module] = MBConv


# EfficientNet-B0 (Tan & Le, 2019, Table 1).
EFFICIENTNET_B0 = (
    StageSpec(1, 3, 1, 32, 16, 1),
    StageSpec(6, 3, 2, 16, 24, 2),
    StageSpec(6, 5, 2, 24, 40, 2),
    StageSpec(6, 3, 2, 40, 80, 3),
    StageSpec(6, 5, 1, 80, 112, 3),
    StageSpec(6, 5, 2, 112, 192, 4),
    StageSpec(6, 3, 1, 192, 320, 1),
)


def scale_stages(stages: Sequence[StageSpec], width_mult: float, depth_mult: float) -> tuple[StageSpec, ...]:
    """Compound scaling of a stage table: widths rounded to multiples of 8, depths rounded up."""
    return tuple(
        StageSpec(
            s.expand_ratio, s.kernel_size, s.stride, make_divisible(s.in_channels * width_mult, 8),
            make_divisible(s.out_channels * width_mult, 8), math.ceil(s.depth * depth_mult), s.block,
        )
        for s in stages
    )


class EfficientNet(Classifier):
    """EfficientNet (v1, and v2 through ``StageSpec.block``).

    Args:
        stages: the stage table (already scaled).
        num_classes: classifier outputs; 0 makes ``forward`` return pooled ``head_conv`` features.
        in_channels: image channels.
        head_channels: width of the final 1x1 conv; default four times the last stage's width.
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth probability reached by the last block.
        norm_eps, norm_momentum: BatchNorm settings.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        stages: Sequence[StageSpec] = EFFICIENTNET_B0,
        num_classes: int = 1000,
        in_channels: int = 3,
        head_channels: int | None = None,
        drop_rate: float = 0.2,
        drop_path_rate: float = 0.2,
        norm_eps: float = 1e-5,
        norm_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=norm_eps, momentum=norm_momentum)
        stem_channels = stages[0].in_channels
        self.stem = ConvNormAct(in_channels, stem_channels, 3, 2, norm_layer=norm_layer, act_layer=nn.SiLU)
        total_blocks, block_index = sum(s.depth for s in stages), 0
        built, reductions, reduction = [], [], 2
        for spec in stages:
            blocks = []
            for index in range(spec.depth):
                blocks.append(
                    spec.block(
                        spec.in_channels if index == 0 else spec.out_channels, spec.out_channels,
                        spec.kernel_size, spec.stride if index == 0 else 1, spec.expand_ratio,
                        norm_layer=norm_layer, drop_path_rate=drop_path_rate * block_index / total_blocks,
                    )
                )
                block_index += 1
            built.append(nn.Sequential(*blocks))
            reduction *= spec.stride
            reductions.append(reduction)
        self.stages = nn.Sequential(*built)
        last_channels = stages[-1].out_channels
        self.num_features = head_channels or 4 * last_channels
        self.head_conv = ConvNormAct(last_channels, self.num_features, 1, norm_layer=norm_layer, act_layer=nn.SiLU)
        self._feature_stages = feature_points(reductions, reduction)
        self.feature_info = [
            FeatureInfo(stages[i].out_channels, reductions[i], f"stages.{i}") for i in self._feature_stages
        ]
        self.feature_info.append(FeatureInfo(self.num_features, reduction, "head_conv"))
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        self._init_weights()

    def _make_classifier(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        linear = nn.Linear(self.num_features, num_classes)
        bound = 1.0 / math.sqrt(num_classes)
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.zeros_(linear.bias)
        return linear

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._feature_stages:
                features.append(x)
        features.append(self.head_conv(x))
        return features


def remap_torchvision_efficientnet(state: StateDict) -> StateDict:
    """torchvision ``features.0`` / ``features.S.J.block.M`` / last ``features.N`` / ``classifier.1`` -> ours."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^features\.(\d+)\.", k))})
    blocks = sorted({(int(m.group(1)), int(m.group(2)))
                     for k in state if (m := re.match(r"^features\.(\d+)\.(\d+)\.block\.", k))})
    if not indices or not blocks:
        raise KeyError("not a torchvision EfficientNet state dict")
    first, last = indices[0], indices[-1]
    mapping = {**rename_conv_norm(state, f"features.{first}", "stem"),
               **rename_conv_norm(state, f"features.{last}", "head_conv")}
    for stage, index in blocks:
        mapping.update(rename_torchvision_block(state, f"features.{stage}.{index}.block", f"stages.{stage - 1}.{index}"))
    mapping.update({k: "classifier." + k[len("classifier.1."):] for k in state if k.startswith("classifier.1.")})
    return apply_mapping(state, mapping)


register_remap("efficientnet", remap_torchvision_efficientnet, name="efficientnet:torchvision")


def remap_timm_efficientnet(state: StateDict) -> StateDict:
    """timm ``conv_stem``/``bn1`` / ``blocks.S.J.*`` / ``conv_head``/``bn2`` / ``classifier`` -> ours.

    timm's ``efficientnet_b0``-``b4`` are the same computation as ours (BN eps 1e-5, symmetric padding, SE
    squeezed to a quarter of the block input). Its ``efficientnet_b5``-``b7`` keep eps 1e-5 where ours
    (torchvision's) use 1e-3: build ours with ``norm_eps=1e-5, norm_momentum=0.1`` for those. The
    ``tf_efficientnet_*`` files have the same keys but TensorFlow's asymmetric 'same' padding and eps 1e-3,
    which no cvzoo EfficientNet computes: they load, but their outputs differ.
    """
    if "conv_stem.weight" not in state or "conv_head.weight" not in state or "conv_head.bias" in state:
        raise KeyError("not a timm EfficientNet state dict")
    mapping = timm_stem_head_mapping(state)
    for stage, index in timm_block_indices(state):
        mapping.update(rename_timm_block(state, f"blocks.{stage}.{index}", f"stages.{stage}.{index}"))
    return apply_mapping(state, mapping)


register_remap("efficientnet", remap_timm_efficientnet, name="efficientnet:timm")


def efficientnet(
    width_mult: float, depth_mult: float, drop_rate: float, tf_norm: bool = False, **kwargs: Any
) -> EfficientNet:
    """A compound-scaled EfficientNet; ``tf_norm`` selects BN eps 0.001 / momentum 0.01 (B5-B7)."""
    norm = {"norm_eps": 1e-3, "norm_momentum": 0.01} if tf_norm else {}
    stages = scale_stages(EFFICIENTNET_B0, width_mult, depth_mult)
    return EfficientNet(stages, drop_rate=drop_rate, **{**norm, **kwargs})


# The registry checks model.kwargs against EfficientNet's signature (cvzoo.models.registry.accepted_keywords).
efficientnet.forwards_kwargs_to = EfficientNet  # type: ignore[attr-defined]


# (width, depth, resolution, dropout) per variant: Tan & Le, 2019, and their released code.
_tv = "torchvision:efficientnet_"
register_model("efficientnet_b0", efficientnet, width_mult=1.0, depth_mult=1.0, drop_rate=0.2, reference=_tv + "b0")
register_model(
    "efficientnet_b1", efficientnet, width_mult=1.0, depth_mult=1.1, drop_rate=0.2, reference=_tv + "b1",
    input_size=(3, 240, 240),
)
register_model(
    "efficientnet_b2", efficientnet, width_mult=1.1, depth_mult=1.2, drop_rate=0.3, reference=_tv + "b2",
    input_size=(3, 260, 260),
)
register_model(
    "efficientnet_b3", efficientnet, width_mult=1.2, depth_mult=1.4, drop_rate=0.3, reference=_tv + "b3",
    input_size=(3, 300, 300),
)
register_model(
    "efficientnet_b4", efficientnet, width_mult=1.4, depth_mult=1.8, drop_rate=0.4, reference=_tv + "b4",
    input_size=(3, 380, 380),
)
register_model(
    "efficientnet_b5", efficientnet, width_mult=1.6, depth_mult=2.2, drop_rate=0.4, tf_norm=True,
    reference=_tv + "b5", input_size=(3, 456, 456),
)
register_model(
    "efficientnet_b6", efficientnet, width_mult=1.8, depth_mult=2.6, drop_rate=0.5, tf_norm=True,
    reference=_tv + "b6", input_size=(3, 528, 528),
)
register_model(
    "efficientnet_b7", efficientnet, width_mult=2.0, depth_mult=3.1, drop_rate=0.5, tf_norm=True,
    reference=_tv + "b7", input_size=(3, 600, 600),
)
