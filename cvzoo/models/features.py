"""Feature metadata and the features-only wrapper that turns any classifier into a backbone."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class FeatureInfo:
    """One stage output: its channel count, total stride w.r.t. the input and the stage module name."""

    channels: int
    reduction: int
    module: str


class FeatureExtractor(nn.Module):
    """Wraps a classifier (contract: ``forward_features`` + ``feature_info``) and drops its head.

    ``out_indices`` picks stages by position in ``feature_info`` (negative indices allowed), so
    ``FeatureExtractor(resnet50(), (1, 2, 3, 4))`` yields the stride 4/8/16/32 maps an FPN expects.
    """

    def __init__(self, model: nn.Module, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        infos = list(model.feature_info)
        n = len(infos)
        indices = tuple(range(n)) if out_indices is None else tuple(i % n for i in out_indices)
        if any(not 0 <= i < n for i in indices):
            raise ValueError(f"out_indices {out_indices} out of range for {n} stages")
        model.reset_classifier(0)
        self.body = model
        self.out_indices = indices
        self.feature_info = [infos[i] for i in indices]

    @property
    def channels(self) -> list[int]:
        return [info.channels for info in self.feature_info]

    @property
    def reductions(self) -> list[int]:
        return [info.reduction for info in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.body.forward_features(x)
        return [features[i] for i in self.out_indices]
