"""LeNet (LeCun et al., 1998), in the form of the PyTorch CIFAR-10 tutorial that the notes follow.

conv 5x5 -> 16, ReLU, max-pool 2 -> conv 5x5 -> 32, ReLU, max-pool 2 -> fc 120 -> fc 84 -> fc classes.
A 32x32 input reaches the first fully connected layer as ``[B, 32, 5, 5]``. ``lenet_mnist`` pads the
first conv by 2 so a 28x28 MNIST / Fashion-MNIST image gives the same 5x5 map (as the 1998 network,
which padded 28 px digits to 32 px).

Module names (``conv1``, ``conv2``, ``fc1``, ``fc2``, ``fc3``) match the notes' ``model.py``, so its
checkpoints load directly.
"""

from __future__ import annotations

import torch
from torch import nn

from cvzoo.models.classification.base import Classifier
from cvzoo.models.features import FeatureInfo
from cvzoo.models.registry import register_model


class LeNet(Classifier):
    """Two conv/pool stages and three fully connected layers.

    Args:
        num_classes: outputs of ``fc3`` (10 by default); 0 returns the 84-d ``fc2`` features.
        in_channels: image channels (3 for CIFAR-10, 1 for MNIST).
        padding: padding of the first conv: 0 for 32 px inputs, 2 for 28 px inputs.

    The fully connected layers fix the input size ``H``: the first conv output ``H + 2 * padding - 4``
    must be 28, i.e. 32 px with ``padding=0`` and 28 px with ``padding=2``.
    """

    classifier_name = "fc3"

    def __init__(self, num_classes: int = 10, in_channels: int = 3, padding: int = 0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=padding)
        self.act1 = nn.ReLU(inplace=True)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.act2 = nn.ReLU(inplace=True)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.fc1 = nn.Linear(32 * 5 * 5, 120)
        self.act3 = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(120, 84)
        self.act4 = nn.ReLU(inplace=True)
        self.num_features = 84
        self.num_classes = num_classes
        self.fc3: nn.Module = self._make_classifier(num_classes)
        self.input_hw = 32 - 2 * padding
        self.feature_info = [FeatureInfo(16, 2, "pool1"), FeatureInfo(32, 4, "pool2")]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, C, 32, 32]`` (or 28 px with padding 2) -> ``[B, 16, 14, 14]``, ``[B, 32, 5, 5]``."""
        # The check is Python-side; skip it while tracing (export) so the graph stays warning-free.
        if not torch.jit.is_tracing() and x.shape[-2:] != (self.input_hw, self.input_hw):
            raise ValueError(
                f"LeNet's fully connected layers need {self.input_hw}x{self.input_hw} inputs, "
                f"got {tuple(x.shape[-2:])} (use lenet for 32 px, lenet_mnist for 28 px)"
            )
        x1 = self.pool1(self.act1(self.conv1(x)))
        x2 = self.pool2(self.act2(self.conv2(x1)))
        return [x1, x2]

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.act4(self.fc2(self.act3(self.fc1(torch.flatten(features[-1], 1)))))


register_model("lenet", LeNet, input_size=(3, 32, 32))
register_model("lenet_mnist", LeNet, in_channels=1, padding=2, input_size=(1, 28, 28))
