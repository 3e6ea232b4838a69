"""AlexNet (Krizhevsky et al., 2012), single-tower as in torchvision, plus the notes' half-width version.

Layout (``features.N`` / ``classifier.N`` indices match torchvision and the notes' ``model.py``, so both
kinds of checkpoints load without a remap)::

    features:   0 conv 11x11/4 -> 1 ReLU -> 2 max-pool 3/2
                3 conv 5x5     -> 4 ReLU -> 5 max-pool 3/2
                6 conv 3x3 -> 7 ReLU -> 8 conv 3x3 -> 9 ReLU -> 10 conv 3x3 -> 11 ReLU -> 12 max-pool 3/2
    avgpool:    adaptive 6x6 (identity at 224 px)
    classifier: 0 dropout -> 1 fc -> 2 ReLU -> 3 dropout -> 4 fc -> 5 ReLU -> 6 fc (the head)

The original two-GPU network split every layer in two halves; ``alexnet_half`` is one such half (48,
128, 192, 192, 128 channels and 2048-wide fully connected layers), the version the notes train.

AlexNet needs inputs of at least 63 px: smaller maps vanish in the third max-pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model

# Index in ``features`` of the last module at each resolution: strides 4, 8, 16, 32.
_STAGE_ENDS = (1, 4, 11, 12)


class AlexNet(Classifier):
    """Five convolutions and three fully connected layers.

    Args:
        num_classes: outputs of the last fully connected layer; 0 returns the ``[B, hidden_dim]``
            penultimate features.
        in_channels: image channels.
        widths: output channels of the five convolutions.
        hidden_dim: width of the two hidden fully connected layers.
        drop_rate: dropout before each hidden fully connected layer (0.5 in the paper).
    """

    classifier_name = "classifier.6"

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 192, 384, 256, 256),
        hidden_dim: int = 4096,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        if len(widths) != 5:
            raise ValueError(f"AlexNet has 5 convolutions, got widths={tuple(widths)}")
        w1, w2, w3, w4, w5 = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w1, 11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w1, w2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(w2, w3, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w3, w4, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w4, w5, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d(6)
        self.num_features = hidden_dim
        self.num_classes = num_classes
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate),
            nn.Linear(w5 * 6 * 6, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(drop_rate),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            self._make_classifier(num_classes),
        )
        channels = (w1, w2, w5, w5)
        self.feature_info = [
            FeatureInfo(c, 2 ** (i + 2), f"features.{end}") for i, (c, end) in enumerate(zip(channels, _STAGE_ENDS))
        ]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, H, W]`` -> maps at strides 4, 8, 16, 32 (for ``H >= 63``)."""
        features = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _STAGE_ENDS:
                features.append(x)
        return features

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier[:-1](torch.flatten(self.avgpool(features[-1]), 1))  # fc6, fc7 and their ReLUs, dropouts


register_model("alexnet", AlexNet, reference="torchvision:alexnet")
register_model("alexnet_half", AlexNet, widths=(48, 128, 192, 192, 128), hidden_dim=2048)
