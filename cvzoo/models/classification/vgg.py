"""VGG (Simonyan & Zisserman, 2015), configurations A/B/D/E = VGG-11/13/16/19, with or without BN.

Five blocks of 3x3 convs (stride 1, padding 1), each closed by a 2x2 max-pool, then an adaptive 7x7
average pool and three fully connected layers. ``features.N`` / ``classifier.N`` indices match
torchvision (and the notes' ``model.py``); timm's layout, which folds fc6/fc7 into convolutions,
loads through the ``vgg`` remap in ``cvzoo.models.weights``.

Stages (``feature_info``) are the pooled outputs of the five blocks (strides 2..32): pool3, pool4 and
pool5 are the maps FCN (Long et al., 2015) taps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import StateDict, register_remap

# Conv widths per block (Simonyan & Zisserman, 2015, Table 1).
VGG11 = ((64,), (128,), (256, 256), (512, 512), (512, 512))
VGG13 = ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512))
VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
VGG19 = ((64, 64), (128, 128), (256,) * 4, (512,) * 4, (512,) * 4)


class VGG(Classifier):
    """Plain stacks of 3x3 convolutions.

    Args:
        blocks: conv output widths per block, e.g. ``VGG16``.
        num_classes: outputs of the last fully connected layer; 0 returns the ``[B, hidden_dim]``
            penultimate features.
        in_channels: image channels.
        batch_norm: put a BatchNorm after every conv (the ``_bn`` variants).
        hidden_dim: width of fc6/fc7.
        drop_rate: dropout after fc6 and fc7.

    Inputs must be at least 32 px (five 2x2 pools).
    """

    classifier_name = "classifier.6"

    def __init__(
        self,
        blocks: Sequence[Sequence[int]] = VGG16,
        num_classes: int = 1000,
        in_channels: int = 3,
        batch_norm: bool = False,
        hidden_dim: int = 4096,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        self.feature_info = []
        self._stage_ends: tuple[int, ...] = ()
        channels = in_channels
        for index, widths in enumerate(blocks):
            for width in widths:
                layers.append(nn.Conv2d(channels, width, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                channels = width
            layers.append(nn.MaxPool2d(2, 2))
            self._stage_ends += (len(layers) - 1,)
            self.feature_info.append(FeatureInfo(channels, 2 ** (index + 1), f"features.{len(layers) - 1}"))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.num_features = hidden_dim
        self.num_classes = num_classes
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            self._make_classifier(num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> the five pooled block outputs at strides 2, 4, 8, 16, 32."""
        features = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._stage_ends:
                features.append(x)
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier[:-1](torch.flatten(self.avgpool(features[-1]), 1))  # fc6, fc7 and their ReLUs, dropouts


def timm_vgg_to_cvzoo(state: StateDict) -> StateDict:
    """timm's VGG layout -> ours: fc6/fc7 as 7x7 and 1x1 convs (``pre_logits``) become linear layers.

    A conv over the whole 7x7 map is the linear layer on the flattened map (channel-major, as
    ``torch.flatten`` orders it), so the weights only need a reshape.
    """
    if "pre_logits.fc1.weight" not in state:
        raise KeyError("not a timm VGG state dict (no pre_logits.fc1.weight)")
    renames = {"pre_logits.fc1": "classifier.0", "pre_logits.fc2": "classifier.3", "head.fc": "classifier.6"}
    out: StateDict = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if prefix in renames:
            key = f"{renames[prefix]}.{leaf}"
            if leaf == "weight" and value.ndim == 4:
                value = value.flatten(1)
        out[key] = value
    return out


register_remap("vgg", timm_vgg_to_cvzoo, name="timm:vgg")

register_model("vgg11", VGG, blocks=VGG11, reference="torchvision:vgg11")
register_model("vgg11_bn", VGG, blocks=VGG11, batch_norm=True, reference="torchvision:vgg11_bn")
register_model("vgg13", VGG, blocks=VGG13, reference="torchvision:vgg13")
register_model("vgg13_bn", VGG, blocks=VGG13, batch_norm=True, reference="torchvision:vgg13_bn")
register_model("vgg16", VGG, blocks=VGG16, reference="torchvision:vgg16")
register_model("vgg16_bn", VGG, blocks=VGG16, batch_norm=True, reference="torchvision:vgg16_bn")
register_model("vgg19", VGG, blocks=VGG19, reference="torchvision:vgg19")
register_model("vgg19_bn", VGG, blocks=VGG19, batch_norm=True, reference="torchvision:vgg19_bn")
