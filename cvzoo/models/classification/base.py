"""The classification-model contract shared by every family (see DESIGN.md, Contracts)."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from cvzoo.models.features import FeatureInfo


class Classifier(nn.Module, ABC):
    """Base class: subclasses build their stages and head and fill ``feature_info``.

    Contract:
        forward_features(x) -> list[Tensor], one map per entry of ``feature_info``
        forward_head(features) -> logits ``[B, num_classes]`` (pooled features when num_classes=0)
        forward(x) = forward_head(forward_features(x))
        get_classifier() -> the last classification layer
        reset_classifier(num_classes) replaces it (0 -> identity, used by the features-only wrapper)
    Constructors take ``num_classes`` and ``in_channels``.
    """

    feature_info: list[FeatureInfo]
    num_classes: int

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    @abstractmethod
    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor: ...

    @abstractmethod
    def get_classifier(self) -> nn.Module: ...

    @abstractmethod
    def reset_classifier(self, num_classes: int) -> None: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
