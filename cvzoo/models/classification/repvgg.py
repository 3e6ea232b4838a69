"""RepVGG (Ding et al., 2021, "RepVGG: Making VGG-style ConvNets Great Again").

Training form: every block sums a 3x3 conv + BN, a 1x1 conv + BN and (when shapes allow) an identity
BN, then applies ReLU. ``reparameterize()`` folds the three branches into one 3x3 conv with bias
(``cvzoo.layers.reparam``), leaving a plain VGG-like stack of 3x3 convs and ReLUs that computes the same
function in eval mode and runs faster (fewer, larger kernels; no branch memory traffic).

Layout (Table 2 of the paper): a stride-2 stem block of ``min(64, 64a)`` channels, then four stages of
``64a, 128a, 256a, 512b`` channels whose first block has stride 2; A-series depths ``(2, 4, 14, 1)``,
B-series ``(4, 6, 16, 1)``. timm's RepVGG (``byobnet``) checkpoints load through the ``repvgg`` remap.

Stages (``feature_info``): stem at stride 2, then the four stages at strides 4, 8, 16, 32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.layers.reparam import fuse_conv_bn_weights, identity_kernel, pad_kernel
from cvzoo.layers.reparam import reparameterize as reparameterize_modules
from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


class RepVGGBlock(nn.Module):
    """``relu(bn(conv3x3(x)) + bn(conv1x1(x)) + bn(x))``; the identity branch exists only at stride 1
    with equal channels. After ``reparameterize()`` the block is ``relu(conv3x3_fused(x))``.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        stride: stride of both convs.
        groups: groups of both convs (the paper's g2/g4 variants).
        identity: keep the identity branch where shapes allow (RT-DETR's fusion blocks have none).
        act_layer: the activation (ReLU; RT-DETR's blocks use SiLU).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, identity: bool = True,
                 act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.groups = in_channels, out_channels, stride, groups
        has_identity = identity and in_channels == out_channels and stride == 1
        self.identity = nn.BatchNorm2d(in_channels) if has_identity else None
        self.conv3x3 = ConvNormAct(in_channels, out_channels, 3, stride, groups=groups, act_layer=None)
        self.conv1x1 = ConvNormAct(in_channels, out_channels, 1, stride, groups=groups, act_layer=None)
        self.fused: nn.Conv2d | None = None
        self.act = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.act(self.fused(x))
        out = self.conv1x1(x) + self.conv3x3(x)
        if self.identity is not None:
            out = out + self.identity(x)
        return self.act(out)

    @torch.no_grad()
    def fused_kernel_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel ``[C_out, C_in / groups, 3, 3]`` and bias equal to the three branches in eval mode."""
        kernel, bias = fuse_conv_bn_weights(self.conv3x3.conv.weight, None, self.conv3x3.bn)
        kernel_1x1, bias_1x1 = fuse_conv_bn_weights(self.conv1x1.conv.weight, None, self.conv1x1.bn)
        kernel, bias = kernel + pad_kernel(kernel_1x1, 3), bias + bias_1x1
        if self.identity is not None:
            eye = identity_kernel(self.in_channels, self.groups, 3, kernel.dtype, kernel.device)
            kernel_id, bias_id = fuse_conv_bn_weights(eye, None, self.identity)
            kernel, bias = kernel + kernel_id, bias + bias_id
        return kernel, bias

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Replace the branches by one 3x3 conv with bias (in place; idempotent)."""
        if self.fused is not None:
            return
        kernel, bias = self.fused_kernel_and_bias()
        fused = nn.Conv2d(
            self.in_channels, self.out_channels, 3, self.stride, padding=1, groups=self.groups, bias=True,
            device=kernel.device, dtype=kernel.dtype,
        )
        fused.weight.copy_(kernel)
        fused.bias.copy_(bias)
        del self.conv3x3, self.conv1x1
        self.identity = None
        self.fused = fused


class RepVGG(Classifier):
    """RepVGG classifier.

    Args:
        depths: blocks per stage (four stages after the stem).
        width_multipliers: the paper's ``(a, b)``: stages 1-3 get ``a`` times 64/128/256 channels, the
            last stage ``b`` times 512.
        num_classes: classifier outputs; 0 makes ``forward`` return pooled features.
        in_channels: image channels.
        groups: groups of the grouped (odd-indexed) layers in the g2/g4 variants; 1 for plain RepVGG.
    """

    def __init__(
        self,
        depths: Sequence[int] = (2, 4, 14, 1),
        width_multipliers: tuple[float, float] = (0.75, 2.5),
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int = 1,
    ) -> None:
        super().__init__()
        a, b = width_multipliers
        widths = (int(64 * a), int(128 * a), int(256 * a), int(512 * b))
        stem_channels = min(64, int(64 * a))
        self.stem = RepVGGBlock(in_channels, stem_channels, stride=2)
        self.feature_info = [FeatureInfo(stem_channels, 2, "stem")]
        stages: list[nn.Sequential] = []
        channels, layer_index = stem_channels, 1
        for index, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for block_index in range(depth):
                # g2/g4 variants group every other layer, counting the stem as layer 0: layers 2, 4, ...
                # (Ding et al., 2021, §4.1; the official code's ``optional_groupwise_layers``).
                block_groups = groups if layer_index % 2 == 0 else 1
                blocks.append(RepVGGBlock(channels, width, 2 if block_index == 0 else 1, block_groups))
                channels, layer_index = width, layer_index + 1
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(FeatureInfo(width, 2 ** (index + 2), f"stages.{index}"))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.num_classes = num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def reparameterize(self) -> RepVGG:
        """Fuse every block into a single 3x3 conv (for inference; call in eval mode). Returns self."""
        reparameterize_modules(self)
        return self

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [self.stem(x)]
        for stage in self.stages:
            features.append(stage(features[-1]))
        return features


def remap_timm_repvgg(state: StateDict) -> StateDict:
    """timm's byobnet RepVGG keys (``stages.0.1.conv_kxk.conv.weight``, ``head.fc.weight``) -> ours."""
    if not any(".conv_kxk." in key for key in state):
        raise KeyError("not a timm RepVGG state dict (no conv_kxk keys)")
    renamed = {}
    for key, value in state.items():
        key = re.sub(r"\.conv_kxk\.", ".conv3x3.", key)
        key = re.sub(r"\.conv_1x1\.", ".conv1x1.", key)
        key = re.sub(r"\.reparam_conv\.", ".fused.", key)
        renamed[re.sub(r"^head\.fc\.", "fc.", key)] = value
    return renamed


register_remap("repvgg", remap_timm_repvgg, name="repvgg:timm")

A_DEPTHS, B_DEPTHS = (2, 4, 14, 1), (4, 6, 16, 1)
register_model("repvgg_a0", RepVGG, depths=A_DEPTHS, width_multipliers=(0.75, 2.5), reference="timm:repvgg_a0")
register_model("repvgg_a1", RepVGG, depths=A_DEPTHS, width_multipliers=(1.0, 2.5), reference="timm:repvgg_a1")
register_model("repvgg_a2", RepVGG, depths=A_DEPTHS, width_multipliers=(1.5, 2.75), reference="timm:repvgg_a2")
register_model("repvgg_b0", RepVGG, depths=B_DEPTHS, width_multipliers=(1.0, 2.5), reference="timm:repvgg_b0")
register_model("repvgg_b1", RepVGG, depths=B_DEPTHS, width_multipliers=(2.0, 4.0), reference="timm:repvgg_b1")
register_model(
    "repvgg_b1g4", RepVGG, depths=B_DEPTHS, width_multipliers=(2.0, 4.0), groups=4, reference="timm:repvgg_b1g4"
)
register_model("repvgg_b2", RepVGG, depths=B_DEPTHS, width_multipliers=(2.5, 5.0), reference="timm:repvgg_b2")
register_model("repvgg_b3", RepVGG, depths=B_DEPTHS, width_multipliers=(3.0, 5.0), reference="timm:repvgg_b3")
