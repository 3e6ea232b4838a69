"""Lite R-ASPP (Howard et al., 2019, "Searching for MobileNetV3", §6.3, Fig. 10), torchvision-compatible.

A mobile segmentation head on the last MobileNet v3 map (whose last stage is dilated, output stride 16):

* a 1x1 conv + BN + ReLU reduces the high-level map to ``inter_channels`` (128);
* a squeeze-and-excitation-like branch (global average pool, 1x1 conv, sigmoid) gates it per channel
  (the paper pools with a large 49x49 window; torchvision and this version pool globally);
* the gated map is upsampled to the stride-8 low-level map, each is classified by a 1x1 conv, and the two
  score maps are added; the sum is resized to the input.

torchvision taps the low-level map at the *first* block of the stride-8 stage (``features[4]``, 40
channels), not at the stage's last block; ``low_module`` names that block (``blocks.3`` in cvzoo's
MobileNet v3), read through a forward hook. Without ``low_module`` the last stride-8 stage map of the
backbone's ``feature_info`` is used. torchvision state dicts load through the ``torchvision:lraspp`` remap.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cvzoo.layers.conv_norm_act import ConvNormAct
from cvzoo.models.registry import register_model
from cvzoo.models.segmentation.base import (
    Segmenter,
    feature_backbone,
    rename_prefixes,
    stage_index,
    upsample_to,
)
from cvzoo.models.weights import StateDict, register_remap


class LRASPPHead(nn.Module):
    """The Lite R-ASPP head: gated 1x1 reduction of the high map + low-map classifier, summed."""

    def __init__(self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int = 128) -> None:
        super().__init__()
        self.cbr = ConvNormAct(high_channels, inter_channels, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.gate = nn.Conv2d(high_channels, inter_channels, 1, bias=False)
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.cbr(high) * torch.sigmoid(self.gate(self.pool(high)))
        x = upsample_to(x, low.shape[-2:])
        return self.low_classifier(low) + self.high_classifier(x)


class _Tap:
    """Forward hook that keeps the last output of the module it is registered on."""

    def __init__(self) -> None:
        self.value: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self.value = output


class LRASPP(Segmenter):
    """Lite R-ASPP segmenter.

    Args:
        num_classes: classes including background.
        backbone: registered classifier (``mobilenet_v3_large``).
        backbone_weights: local ImageNet checkpoint of the backbone.
        low_module: module of the backbone whose output is the low-level map (None: the last stride-8
            stage of ``feature_info``).
        inter_channels: width of the gated high-level branch.
        dilated: build the backbone with its last stage dilated (output stride 16).
        in_channels: image channels.
    """

    def __init__(
        self,
        num_classes: int = 21,
        backbone: str = "mobilenet_v3_large",
        backbone_weights: str | None = None,
        low_module: str | None = None,
        inter_channels: int = 128,
        dilated: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        extra = {"dilated": True} if dilated else {}
        self.backbone = feature_backbone(backbone, 32, in_channels, backbone_weights, **extra)
        infos = self.backbone.feature_info
        self.low_index: int | None = None
        self._tap: _Tap | None = None
        if low_module is None:
            self.low_index = stage_index(infos, 8, "LR-ASPP low-level features")
            low_channels = infos[self.low_index].channels
        else:
            module = self.backbone.body.get_submodule(low_module)
            self._tap = _Tap()
            module.register_forward_hook(self._tap)
            low_channels = _output_channels(module, low_module)
        self.head = LRASPPHead(low_channels, infos[-1].channels, num_classes, inter_channels)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        low = features[self.low_index] if self._tap is None else self._tap.value
        out = self.head(low, features[-1])
        return {"out": upsample_to(out, images.shape[-2:])}


def _output_channels(module: nn.Module, name: str) -> int:
    """Output channels of a block: its ``out_channels`` attribute, else its last conv's."""
    channels = getattr(module, "out_channels", None)
    if isinstance(channels, int):
        return channels
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"low_module {name!r} has no convolution to read its output channels from")
    return convs[-1].out_channels


def torchvision_lraspp_to_cvzoo(state: StateDict) -> StateDict:
    """torchvision ``lraspp_mobilenet_v3_large`` keys -> ``LRASPP`` keys.

    The backbone is torchvision's ``features`` Sequential stored as ``backbone.N``: it goes through the
    registered MobileNet v3 remap (as ``features.N``) and lands under ``backbone.body``. The head's
    ``cbr.{0,1}`` (conv, BN), ``scale.1`` (gate conv) and the two classifiers are renamed.
    """
    from cvzoo.models.classification.mobilenet_v3 import remap_torchvision_mobilenet_v3

    if "classifier.cbr.0.weight" not in state:
        raise KeyError("not a torchvision LR-ASPP state dict (no classifier.cbr.0)")
    backbone = {"features." + k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    out = {"backbone.body." + k: v for k, v in remap_torchvision_mobilenet_v3(backbone).items()}
    head = {k: v for k, v in state.items() if k.startswith("classifier.")}
    out.update(rename_prefixes(head, {
        "classifier.cbr.0": "head.cbr.conv", "classifier.cbr.1": "head.cbr.bn", "classifier.scale.1": "head.gate",
        "classifier.low_classifier": "head.low_classifier", "classifier.high_classifier": "head.high_classifier",
    }))
    return out


register_remap("lraspp", torchvision_lraspp_to_cvzoo, name="torchvision:lraspp")

# blocks.3 is the first block of MobileNet v3 large's stride-8 stage (torchvision's low-level tap).
register_model(
    "lraspp_mobilenet_v3_large", LRASPP, task="segment", backbone="mobilenet_v3_large", low_module="blocks.3",
    reference="torchvision:lraspp_mobilenet_v3_large", input_size=(3, 520, 520),
)
