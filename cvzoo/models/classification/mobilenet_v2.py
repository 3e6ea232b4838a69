"""MobileNet v2 (Sandler et al., 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks").

The inverted residual block expands a thin input with a 1x1 conv, filters it with a depthwise 3x3 conv
and projects it back with a *linear* 1x1 conv (no activation: §3.2 shows ReLU in the thin bottleneck
destroys information); the shortcut joins the thin ends. ``InvertedResidual`` is shared by MobileNet v3
and EfficientNet, which add squeeze-and-excitation and other activations.

Widths scale with ``width_mult`` rounded by ``make_divisible`` (multiples of 8); the last conv keeps at
least 1280 channels. torchvision checkpoints (``features.N.conv.M``) load through the ``mobilenetv2``
remap; ``rename_torchvision_block`` names the parts of torchvision's positional block layout.

Stages (``feature_info``): the last block at strides 2, 4, 8 and 16, then the 1x1 ``head_conv`` at 32.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import nn

from cvzoo.layers import ConvNormAct, DropPath, make_divisible
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

NormLayer = Callable[[int], nn.Module]

# (expand ratio t, output channels c, repeats n, stride of the first repeat s): Sandler et al., Table 2.
MOBILENET_V2_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expand -> depthwise kxk -> [squeeze-excite] -> linear 1x1 project, plus the identity shortcut.

    Children: ``expand`` (an identity when ``hidden_channels == in_channels``), ``depthwise``, ``se``
    (an identity without SE), ``project`` and ``drop_path`` (stochastic depth on the residual branch,
    EfficientNet).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        hidden_channels: width of the expanded (depthwise) part.
        stride: stride of the depthwise conv.
        kernel_size: depthwise kernel size.
        act_layer: activation after the expand and depthwise convs (ReLU6 in MobileNet v2).
        se_layer: builds the squeeze-excite module from ``hidden_channels``; None for no SE.
        norm_layer: normalisation constructor.
        dilation: dilation of the depthwise conv (its stride is then 1), for dense prediction heads.
        drop_path_rate: probability of dropping the residual branch per sample while training.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        stride: int = 1,
        kernel_size: int = 3,
        act_layer: Callable[..., nn.Module] = nn.ReLU6,
        se_layer: Callable[[int], nn.Module] | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
        dilation: int = 1,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.use_residual = stride == 1 and in_channels == out_channels
        common = {"norm_layer": norm_layer, "act_layer": act_layer}
        self.expand = (
            ConvNormAct(in_channels, hidden_channels, 1, **common) if hidden_channels != in_channels else nn.Identity()
        )
        self.depthwise = ConvNormAct(
            hidden_channels, hidden_channels, kernel_size, 1 if dilation > 1 else stride,
            dilation=dilation, groups=hidden_channels, **common,
        )
        self.se = se_layer(hidden_channels) if se_layer is not None else nn.Identity()
        self.project = ConvNormAct(hidden_channels, out_channels, 1, norm_layer=norm_layer, act_layer=None)
        self.drop_path = DropPath(drop_path_rate) if self.use_residual and drop_path_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.se(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.use_residual else out


def feature_points(reductions: Sequence[int], final_reduction: int) -> list[int]:
    """Indices of the last entry at each reduction below ``final_reduction``.

    ``reductions[i]`` is the total stride after module ``i`` of a flat sequence; the map at
    ``final_reduction`` comes from the head conv, so earlier modules at that stride are not stages.
    """
    return [
        i for i, r in enumerate(reductions)
        if r < final_reduction and (i + 1 == len(reductions) or reductions[i + 1] != r)
    ]


def init_mobilenet_weights(model: nn.Module) -> None:
    """MobileNet v2/v3 initialisation: He (fan-out) convs, N(0, 0.01) linear layers, zero biases."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0, 0.01)
            nn.init.zeros_(module.bias)


class MobileNetV2(Classifier):
    """MobileNet v2.

    Args:
        num_classes: classifier outputs; 0 makes ``forward`` return the pooled ``head_conv`` features.
        in_channels: image channels.
        width_mult: the paper's width multiplier (0.35 to 1.4 in Table 6).
        round_nearest: channel counts are rounded to multiples of this.
        drop_rate: dropout before the classifier.
        settings: ``(t, c, n, s)`` rows of the body.
    """

    classifier_name = "classifier"

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        drop_rate: float = 0.2,
        settings: Sequence[tuple[int, int, int, int]] = MOBILENET_V2_SETTINGS,
    ) -> None:
        super().__init__()
        stem_channels = make_divisible(32 * width_mult, round_nearest)
        # The last conv is never narrowed below 1280 (Sandler et al., §5.1: "we do not apply the width
        # multiplier to the very last convolutional layer" when it is below 1).
        self.num_features = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self.stem = ConvNormAct(in_channels, stem_channels, 3, 2, act_layer=nn.ReLU6)
        blocks, reductions, channels, reduction = [], [], stem_channels, 2
        for expand_ratio, width, repeats, first_stride in settings:
            out_channels = make_divisible(width * width_mult, round_nearest)
            for index in range(repeats):
                stride = first_stride if index == 0 else 1
                hidden = int(round(channels * expand_ratio))
                blocks.append(InvertedResidual(channels, out_channels, hidden, stride, act_layer=nn.ReLU6))
                channels, reduction = out_channels, reduction * stride
                reductions.append(reduction)
        self.blocks = nn.Sequential(*blocks)
        self.head_conv = ConvNormAct(channels, self.num_features, 1, act_layer=nn.ReLU6)
        self._feature_blocks = feature_points(reductions, reduction)
        self.feature_info = [
            FeatureInfo(blocks[i].project.out_channels, reductions[i], f"blocks.{i}") for i in self._feature_blocks
        ]
        self.feature_info.append(FeatureInfo(self.num_features, reduction, "head_conv"))
        self.dropout = nn.Dropout(drop_rate)
        self.num_classes = num_classes
        self.classifier: nn.Module = self._make_classifier(num_classes)
        init_mobilenet_weights(self)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self._feature_blocks:
                features.append(x)
        features.append(self.head_conv(x))
        return features


# --------------------------------------------------------------------------------------------------
# torchvision layout
# --------------------------------------------------------------------------------------------------


def rename_torchvision_block(state: StateDict, old_prefix: str, new_prefix: str) -> dict[str, str]:
    """Old -> new names for one torchvision inverted-residual body (a Sequential at ``old_prefix``).

    torchvision numbers the parts of a block by position, and which parts exist depends on the block
    (no expand conv when the expansion ratio is 1, SE only in some blocks, MobileNet v2 splits its
    projection into a bare conv and a BN). The parts are recognised from the tensors instead: a child
    with ``fc1`` is the SE; each conv (``i.0.weight`` with its BN ``i.1.*``, or ``i.weight`` followed
    by a BN child) is a unit; the depthwise unit (one input channel per group, kernel > 1) separates
    ``expand`` from ``project``. A block without a depthwise conv is a Fused-MBConv: ``fused`` then
    ``project``.
    """
    children: dict[int, list[str]] = {}
    pattern = re.compile(rf"^{re.escape(old_prefix)}\.(\d+)\.(.+)$")
    for key in state:
        match = pattern.match(key)
        if match:
            children.setdefault(int(match.group(1)), []).append(match.group(2))
    mapping: dict[str, str] = {}
    units: list[dict[str, str]] = []  # each: old key -> suffix inside the unit ("conv.weight", "bn.bias")
    for index in sorted(children):
        rests = children[index]
        old = f"{old_prefix}.{index}"
        if "fc1.weight" in rests:
            mapping.update({f"{old}.{rest}": f"{new_prefix}.se.{rest}" for rest in rests})
        elif "0.weight" in rests:  # conv + BN (+ act) as one Sequential
            units.append({f"{old}.{rest}": ("conv." if rest.startswith("0.") else "bn.") + rest[2:] for rest in rests})
        elif "running_mean" in rests:  # a bare BN after a bare conv
            if not units:
                raise KeyError(f"{old}: batch norm without a conv before it")
            units[-1].update({f"{old}.{rest}": f"bn.{rest}" for rest in rests})
        else:  # a bare conv
            units.append({f"{old}.{rest}": f"conv.{rest}" for rest in rests})
    if not units:
        raise KeyError(f"no conv found under {old_prefix}")

    def is_depthwise(unit: dict[str, str]) -> bool:
        weight = next(state[k] for k, v in unit.items() if v == "conv.weight")
        return weight.shape[1] == 1 and weight.shape[-1] > 1

    depthwise = [i for i, unit in enumerate(units) if is_depthwise(unit)]
    if depthwise:
        roles = ["expand"] * depthwise[0] + ["depthwise"] + ["project"] * (len(units) - depthwise[0] - 1)
    else:
        roles = ["fused", "project"][: len(units)]
    if len(set(roles)) != len(roles) or len(roles) != len(units):
        raise KeyError(f"cannot name the {len(units)} convs under {old_prefix}")
    for role, unit in zip(roles, units):
        mapping.update({old: f"{new_prefix}.{role}.{suffix}" for old, suffix in unit.items()})
    return mapping


# timm's EfficientNet builder (``timm/models/_efficientnet_blocks.py``) names the parts of a block instead
# of numbering them: an inverted residual is conv_pw/bn1 (expand), conv_dw/bn2 (depthwise), se, conv_pwl/bn3
# (project); a depthwise-separable block (no expansion) is conv_dw/bn1, se, conv_pw/bn2.
_TIMM_INVERTED_RESIDUAL = {"conv_pw": "expand.conv", "bn1": "expand.bn", "conv_dw": "depthwise.conv",
                           "bn2": "depthwise.bn", "conv_pwl": "project.conv", "bn3": "project.bn"}
_TIMM_DEPTHWISE_SEPARABLE = {"conv_dw": "depthwise.conv", "bn1": "depthwise.bn", "conv_pw": "project.conv",
                             "bn2": "project.bn"}
_TIMM_SE = {"se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2"}


def rename_timm_block(state: StateDict, old_prefix: str, new_prefix: str) -> dict[str, str]:
    """Old -> new names for one block of timm's EfficientNet builder (EfficientNet, MobileNet v3).

    Raises:
        KeyError: a part that is neither of the two block kinds (e.g. timm's Fused-MBConv ``conv_exp``).
    """
    parts = {key[len(old_prefix) + 1:] for key in state if key.startswith(f"{old_prefix}.")}
    names = _TIMM_INVERTED_RESIDUAL if any(p.startswith("conv_pwl.") for p in parts) else _TIMM_DEPTHWISE_SEPARABLE
    names = {**names, **_TIMM_SE}
    mapping = {}
    for part in parts:
        module, _, leaf = part.rpartition(".")
        if module not in names:
            raise KeyError(f"{old_prefix}.{part}: not a part of timm's inverted-residual or depthwise-separable block")
        mapping[f"{old_prefix}.{part}"] = f"{new_prefix}.{names[module]}.{leaf}"
    return mapping


def timm_block_indices(state: StateDict) -> list[tuple[int, int]]:
    """The ``(stage, index)`` of every ``blocks.S.J`` in a timm EfficientNet-builder state dict, in order."""
    return sorted({(int(m.group(1)), int(m.group(2))) for k in state if (m := re.match(r"^blocks\.(\d+)\.(\d+)\.", k))})


def timm_stem_head_mapping(state: StateDict) -> dict[str, str]:
    """timm's ``conv_stem``/``bn1`` and ``conv_head``/``bn2`` (a 1x1 conv-BN head, before pooling) -> ours."""
    mapping = {"conv_stem.weight": "stem.conv.weight", "conv_head.weight": "head_conv.conv.weight"}
    for key in state:
        if key.startswith("bn1."):
            mapping[key] = "stem.bn." + key[len("bn1."):]
        elif key.startswith("bn2."):
            mapping[key] = "head_conv.bn." + key[len("bn2."):]
    return mapping


def rename_conv_norm(state: StateDict, old_prefix: str, new_prefix: str) -> dict[str, str]:
    """``old.0.weight`` / ``old.1.*`` (torchvision's Conv2dNormActivation) -> ``new.conv.*`` / ``new.bn.*``."""
    mapping = {}
    for key in state:
        if key.startswith(f"{old_prefix}.0."):
            mapping[key] = f"{new_prefix}.conv.{key[len(old_prefix) + 3:]}"
        elif key.startswith(f"{old_prefix}.1."):
            mapping[key] = f"{new_prefix}.bn.{key[len(old_prefix) + 3:]}"
    return mapping


def apply_mapping(state: StateDict, mapping: dict[str, str]) -> StateDict:
    """Rename the keys in ``mapping``; keys not in it keep their names."""
    return {mapping.get(key, key): value for key, value in state.items()}


def remap_torchvision_mobilenet_v2(state: StateDict) -> StateDict:
    """torchvision ``features.0`` / ``features.N.conv.M`` / ``features.18`` / ``classifier.1`` -> ours."""
    indices = sorted({int(m.group(1)) for k in state if (m := re.match(r"^features\.(\d+)\.", k))})
    if not indices or not any(".conv." in k for k in state):
        raise KeyError("not a torchvision MobileNet v2 state dict")
    first, last = indices[0], indices[-1]
    mapping = {**rename_conv_norm(state, f"features.{first}", "stem"),
               **rename_conv_norm(state, f"features.{last}", "head_conv")}
    for index in indices[1:-1]:
        mapping.update(rename_torchvision_block(state, f"features.{index}.conv", f"blocks.{index - 1}"))
    mapping.update({k: "classifier." + k[len("classifier.1."):] for k in state if k.startswith("classifier.1.")})
    return apply_mapping(state, mapping)


register_remap("mobilenetv2", remap_torchvision_mobilenet_v2, name="mobilenetv2:torchvision")



def remap_timm_mobilenet_v2(state: StateDict) -> StateDict:
    """timm ``mobilenetv2_050/100/140`` (``conv_stem`` / ``blocks.S.J`` / ``conv_head`` + ``bn2``) -> ours.

    The same network (ReLU6, BN eps 1e-5, the same width rounding and 1280-channel floor of the last conv);
    timm nests the blocks by stage where ours are flat. ``mobilenetv2_110d`` / ``_120d`` change the depths
    and have no cvzoo variant.
    """
    if "conv_stem.weight" not in state or "conv_head.weight" not in state or "conv_head.bias" in state:
        raise KeyError("not a timm MobileNet v2 state dict")
    mapping = timm_stem_head_mapping(state)
    for flat, (stage, index) in enumerate(timm_block_indices(state)):
        mapping.update(rename_timm_block(state, f"blocks.{stage}.{index}", f"blocks.{flat}"))
    return apply_mapping(state, mapping)


register_remap("mobilenetv2", remap_timm_mobilenet_v2, name="mobilenetv2:timm")

# timm publishes width 1.0 as mobilenetv2_100 (torchvision's architecture; its file loads through the timm remap).
register_model("mobilenet_v2", MobileNetV2, reference="torchvision:mobilenet_v2", timm_name="mobilenetv2_100")
register_model("mobilenet_v2_050", MobileNetV2, width_mult=0.5, reference="timm:mobilenetv2_050")
register_model("mobilenet_v2_140", MobileNetV2, width_mult=1.4, reference="timm:mobilenetv2_140")
