"""MobileNet v3 large and small (Howard et al., 2019, "Searching for MobileNetV3").

The blocks are MobileNet v2's inverted residuals with, where the search chose them, squeeze-and-
excitation (squeezed to a quarter of the expanded width, gated by a hard sigmoid, §5.3) and the
hard-swish activation ``x * relu6(x + 3) / 6`` (§5.2), which is cheap on mobile hardware and used only
in the deeper half where the maps are small. The head pools before its last 1x1 conv (here a linear
layer), saving the 7x7 conv cost of MobileNet v2's head (§5.1).

torchvision-compatible (BN eps 0.001, momentum 0.01); its ``features.N.block.M`` checkpoints load
through the ``mobilenetv3`` remap. ``dilated=True`` replaces the last stride by dilation 2 (output
stride 16), as LR-ASPP segmentation uses it.

Stages (``feature_info``): the last map at strides 2, 4, 8 and 16, then the 1x1 ``head_conv`` at 32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, make_divisible
from cvzoo.layers.attention import SqueezeExcite
from cvzoo.models.classification.base import Classifier
from cvzoo.models.classification.mobilenet_v2 import (
    InvertedResidual,
    apply_mapping,
    feature_points,
    init_mobilenet_weights,
    rename_conv_norm,
    rename_timm_block,
    rename_torchvision_block,
    timm_block_indices,
)
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

# (kernel, expanded channels, output channels, SE, activation, stride): Howard et al., Tables 1 and 2.
MOBILENET_V3_LARGE = (
    (3, 16, 16, False, "relu", 1),
    (3, 64, 24, False, "relu", 2),
    (3, 72, 24, False, "relu", 1),
    (5, 72, 40, True, "relu", 2),
    (5, 120, 40, True, "relu", 1),
    (5, 120, 40, True, "relu", 1),
    (3, 240, 80, False, "hswish", 2),
    (3, 200, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 184, 80, False, "hswish", 1),
    (3, 480, 112, True, "hswish", 1),
    (3, 672, 112, True, "hswish", 1),
    (5, 672, 160, True, "hswish", 2),
    (5, 960, 160, True, "hswish", 1),
    (5, 960, 160, True, "hswish", 1),
)
MOBILENET_V3_SMALL = (
    (3, 16, 16, True, "relu", 2),
    (3, 72, 24, False, "relu", 2),
    (3, 88, 24, False, "relu", 1),
    (5, 96, 40, True, "hswish", 2),
    (5, 240, 40, True, "hswish", 1),
    (5, 240, 40, True, "hswish", 1),
    (5, 120, 48, True, "hswish", 1),
    (5, 144, 48, True, "hswish", 1),
    (5, 288, 96, True, "hswish", 2),
    (5, 576, 96, True, "hswish", 1),
    (5, 576, 96, True, "hswish", 1),
)
ACTIVATIONS = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def _squeeze_excite(channels: int) -> SqueezeExcite:
    # SE squeezed to 1/4 of the expanded width, rounded to a multiple of 8, with a hard-sigmoid gate.
    return SqueezeExcite(channels, make_divisible(channels // 4, 8), act_layer=nn.ReLU, gate_layer=nn.Hardsigmoid)


class MobileNetV3(Classifier):
    """MobileNet v3.

    Args:
        settings: ``(kernel, expanded, out, se, activation, stride)`` rows (``MOBILENET_V3_LARGE``/``_SMALL``).
        last_channels: width of the pre-logits layer (1280 large, 1024 small), scaled by ``width_mult``.
        num_classes: classifier outputs; 0 makes ``forward`` return the ``[B, last_channels]`` pre-logits.
        in_channels: image channels.
        width_mult: channel multiplier (rounded to multiples of 8).
        drop_rate: dropout before the classifier.
        dilated: trade the last stride for dilation (output stride 16).
        norm_eps, norm_momentum: BatchNorm settings (torchvision's 0.001 / 0.01; timm's ``mobilenetv3_*``
            use PyTorch's defaults 1e-5 / 0.1).
    """

    classifier_name = "classifier"

    def __init__(
        self,
        settings: Sequence[tuple[int, int, int, bool, str, int]] = MOBILENET_V3_LARGE,
        last_channels: int = 1280,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        drop_rate: float = 0.2,
        dilated: bool = False,
        norm_eps: float = 0.001,
        norm_momentum: float = 0.01,
    ) -> None:
        super().__init__()
        norm_layer = partial(nn.BatchNorm2d, eps=norm_eps, momentum=norm_momentum)
        stem_channels = make_divisible(16 * width_mult, 8)
        self.stem = ConvNormAct(in_channels, stem_channels, 3, 2, norm_layer=norm_layer, act_layer=nn.Hardswish)
        blocks, reductions, channels, reduction, dilation = [], [], stem_channels, 2, 1
        last_stride_index = max(i for i, row in enumerate(settings) if row[5] > 1)
        for index, (kernel, expanded, width, use_se, activation, stride) in enumerate(settings):
            if dilated and index >= last_stride_index:
                dilation, stride = 2, 1
            out_channels = make_divisible(width * width_mult, 8)
            blocks.append(
                InvertedResidual(
                    channels, out_channels, make_divisible(expanded * width_mult, 8), stride, kernel,
                    act_layer=ACTIVATIONS[activation], se_layer=_squeeze_excite if use_se else None,
                    norm_layer=norm_layer, dilation=dilation,
                )
            )
            channels, reduction = out_channels, reduction * stride
            reductions.append(reduction)
        self.blocks = nn.Sequential(*blocks)
        head_channels = 6 * channels
        self.head_conv = ConvNormAct(channels, head_channels, 1, norm_layer=norm_layer, act_layer=nn.Hardswish)

        # The stem is a stage of its own when the first block already strides (MobileNet v3 small).
        all_reductions = [2, *reductions]
        self._feature_points = feature_points(all_reductions, reduction)  # 0 = stem, i + 1 = blocks[i]
        self.feature_info = [
            FeatureInfo(
                stem_channels if i == 0 else blocks[i - 1].project.out_channels, all_reductions[i],
                "stem" if i == 0 else f"blocks.{i - 1}",
            )
            for i in self._feature_points
        ]
        self.feature_info.append(FeatureInfo(head_channels, reduction, "head_conv"))

        self.num_features = make_divisible(last_channels * width_mult, 8)
        self.pre_logits = nn.Sequential(nn.Linear(head_channels, self.num_features), nn.Hardswish(inplace=True))
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        init_mobilenet_weights(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = [x] if 0 in self._feature_points else []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index + 1 in self._feature_points:
                features.append(x)
        features.append(self.head_conv(x))
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.dropout(self.pre_logits(features[-1].mean((2, 3))))


def remap_torchvision_mobilenet_v3(state: StateDict) -> StateDict:
    """torchvision ``features.N.block.M`` / ``classifier.{0,3}`` -> ours."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^features\.(\d+)\.", k))})
    if not indices or not any(".block." in k for k in state):
        raise KeyError("not a torchvision MobileNet v3 state dict")
    first, last = indices[0], indices[-1]
    mapping = {**rename_conv_norm(state, f"features.{first}", "stem"),
               **rename_conv_norm(state, f"features.{last}", "head_conv")}
    for index in indices[1:-1]:
        mapping.update(rename_torchvision_block(state, f"features.{index}.block", f"blocks.{index - 1}"))
    for key in state:
        if key.startswith("classifier.0."):
            mapping[key] = "pre_logits.0." + key[len("classifier.0."):]
        elif key.startswith("classifier.3."):
            mapping[key] = "classifier." + key[len("classifier.3."):]
    return apply_mapping(state, mapping)


register_remap("mobilenetv3", remap_torchvision_mobilenet_v3, name="mobilenetv3:torchvision")


def remap_timm_mobilenet_v3(state: StateDict) -> StateDict:
    """timm ``mobilenetv3_large_100`` / ``_small_100`` -> ours (build ours with ``norm_eps=1e-5, norm_momentum=0.1``).

    timm nests the blocks by stage (``blocks.S.J``) where ours are flat, and its last stage is the 1x1
    conv-BN-hardswish that is our ``head_conv``. Its head is the paper's: pool, then a 1x1 conv with bias
    (``conv_head``) and hardswish; on the pooled 1x1 map that conv is our ``pre_logits`` linear layer, so
    its kernel is reshaped. The SE widths (a quarter of the expanded width rounded to 8) and hard-sigmoid
    gate are torchvision's; only the BN eps differs (1e-5), hence the keyword. ``tf_mobilenetv3_*`` use
    TensorFlow's 'same' padding and ``mobilenetv3_rw`` another head: not the same computation.
    """
    if "conv_stem.weight" not in state or "conv_head.bias" not in state:
        raise KeyError("not a timm MobileNet v3 state dict")
    indices = timm_block_indices(state)
    last_stage = indices[-1][0] if indices else -1
    head = [(s, j) for s, j in indices if s == last_stage]
    if len(head) != 1 or f"blocks.{last_stage}.0.conv.weight" not in state:
        raise KeyError("timm MobileNet v3: the last stage is not one conv-BN-act (the head conv)")
    mapping = {"conv_stem.weight": "stem.conv.weight", f"blocks.{last_stage}.0.conv.weight": "head_conv.conv.weight",
               "conv_head.bias": "pre_logits.0.bias"}
    for key in state:
        if key.startswith("bn1."):
            mapping[key] = "stem.bn." + key[len("bn1."):]
        elif key.startswith(f"blocks.{last_stage}.0.bn1."):
            mapping[key] = "head_conv.bn." + key[len(f"blocks.{last_stage}.0.bn1."):]
    for flat, (stage, index) in enumerate(i for i in indices if i[0] != last_stage):
        mapping.update(rename_timm_block(state, f"blocks.{stage}.{index}", f"blocks.{flat}"))
    converted = apply_mapping({k: v for k, v in state.items() if k != "conv_head.weight"}, mapping)
    converted["pre_logits.0.weight"] = state["conv_head.weight"].flatten(1)  # [out, in, 1, 1] -> [out, in]
    return converted


register_remap("mobilenetv3", remap_timm_mobilenet_v3, name="mobilenetv3:timm")

register_model(
    "mobilenet_v3_large", MobileNetV3, settings=MOBILENET_V3_LARGE, last_channels=1280,
    reference="torchvision:mobilenet_v3_large",
)
register_model(
    "mobilenet_v3_small", MobileNetV3, settings=MOBILENET_V3_SMALL, last_channels=1024,
    reference="torchvision:mobilenet_v3_small",
)
# timm's MobileNet v3 (the same network with PyTorch's BN defaults, eps 1e-5 / momentum 0.1): the variants
# its checkpoints, and its published weight sets by tag, load into with the same outputs.
_timm_bn = {"norm_eps": 1e-5, "norm_momentum": 0.1}
register_model(
    "mobilenet_v3_large_100", MobileNetV3, settings=MOBILENET_V3_LARGE, last_channels=1280, **_timm_bn,
    reference="timm:mobilenetv3_large_100",
)
register_model(
    "mobilenet_v3_small_100", MobileNetV3, settings=MOBILENET_V3_SMALL, last_channels=1024, **_timm_bn,
    reference="timm:mobilenetv3_small_100",
)
