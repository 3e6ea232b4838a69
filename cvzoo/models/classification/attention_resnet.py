"""ResNets with an attention module in every residual block: SE-, CBAM- and SRM-ResNet.

The attention recalibrates the residual branch just before it is added to the shortcut, where SE
(Hu et al., 2018, Fig. 3), CBAM (Woo et al., 2018, Fig. 3) and SRM (Lee et al., 2019, §3.3) all place
it. ``add_attention(model, kind)`` converts a built ``ResNet`` in place: each block is replaced by an
``AttentionBlock`` that keeps the block's own modules under the same names and adds ``attention``, so

    model = add_attention(create_model("resnet50", weights="resnet50-0676ba61.pth"), "se")

starts an SE-ResNet from ImageNet ResNet weights (the attention modules start fresh). timm's
``seresnet50`` checkpoints (``layer1.0.se.fc1``) load through the ``resnet:timm_se`` remap.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from cvzoo.layers.attention import create_attention
from cvzoo.models.classification.resnet import BasicBlock, Bottleneck, ResNet
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap


class AttentionBlock(nn.Module):
    """A ResNet ``BasicBlock`` or ``Bottleneck`` whose residual branch passes through ``attention``
    before the addition. The block's children are registered here under their own names, so the state
    dict is the plain ResNet's plus ``attention.*``.

    Args:
        block: the block to wrap (its modules are shared, not copied).
        attention: module mapping the branch output ``[B, C, H, W]`` to the same shape.
    """

    def __init__(self, block: BasicBlock | Bottleneck, attention: nn.Module) -> None:
        super().__init__()
        if not isinstance(block, (BasicBlock, Bottleneck)):
            raise TypeError(f"expected a ResNet BasicBlock or Bottleneck, got {type(block).__name__}")
        self.bottleneck = isinstance(block, Bottleneck)
        for name, child in block.named_children():
            self.add_module(name, child)
        self.downsample = block.downsample  # None (identity shortcut) is not among the children
        self.attention = attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        if self.bottleneck:
            out = self.act2(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            final_act = self.act3
        else:
            out = self.bn2(self.conv2(out))
            final_act = self.act2
        return final_act(self.attention(out) + shortcut)


def add_attention(model: ResNet, kind: str = "se", **attention_kwargs: Any) -> ResNet:
    """Insert ``kind`` attention ("se", "cbam" or "srm") into every residual block of ``model`` (in place).

    Args:
        model: a ``ResNet`` (any depth, ResNeXt and wide variants included).
        kind: the attention module, see ``cvzoo.layers.attention.create_attention``.
        **attention_kwargs: passed to the attention module (e.g. ``reduction=8``).

    Returns:
        ``model``, for chaining.
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"add_attention expects a ResNet, got {type(model).__name__}")
    device = next(model.parameters()).device
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for index, block in enumerate(stage):
            if isinstance(block, AttentionBlock):
                raise ValueError("the model already has attention in its blocks")
            channels = (block.bn3 if isinstance(block, Bottleneck) else block.bn2).num_features
            attention = create_attention(kind, channels, **attention_kwargs).to(device)
            stage[index] = AttentionBlock(block, attention)
    model.attention_kind = kind
    return model


def attention_resnet(kind: str, **kwargs: Any) -> ResNet:
    """Registry builder: ``ResNet(**kwargs)`` with ``kind`` attention in every block."""
    return add_attention(ResNet(**kwargs), kind)


# The registry checks model.kwargs against ResNet's signature (cvzoo.models.registry.accepted_keywords).
attention_resnet.forwards_kwargs_to = ResNet  # type: ignore[attr-defined]


def remap_timm_se_resnet(state: StateDict) -> StateDict:
    """timm's SE-ResNet keys (``layerN.i.se.fc1.weight``) -> ours (``layerN.i.attention.fc1.weight``)."""
    if not any(".se.fc1." in key for key in state):
        raise KeyError("not a timm SE-ResNet state dict")
    return {re.sub(r"\.se\.", ".attention.", key): value for key, value in state.items()}


register_remap("resnet", remap_timm_se_resnet, name="resnet:timm_se")

_r50 = {"block": Bottleneck, "layers": (3, 4, 6, 3)}
register_model("se_resnet18", attention_resnet, kind="se", block=BasicBlock, layers=(2, 2, 2, 2))
register_model("se_resnet50", attention_resnet, kind="se", **_r50, reference="timm:seresnet50")
register_model("cbam_resnet50", attention_resnet, kind="cbam", **_r50)
register_model("srm_resnet50", attention_resnet, kind="srm", **_r50)
