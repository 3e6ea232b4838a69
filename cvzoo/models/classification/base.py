"""The classification-model contract shared by every family (see DESIGN.md, Contracts)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from cvzoo.models.features import FeatureInfo


class Classifier(nn.Module, ABC):
    """Base class: subclasses build their stages and head and fill ``feature_info``.

    Contract:
        forward_features(x) -> list[Tensor], one map per entry of ``feature_info``
        forward_head(features) -> logits ``[B, num_classes]`` (the ``[B, num_features]`` pre-logits
            when num_classes=0)
        forward(x) = forward_head(forward_features(x))
        get_classifier() -> the last classification layer
        reset_classifier(num_classes) replaces it (0 -> identity, used by the features-only wrapper)
    Constructors take ``num_classes`` and ``in_channels``.

    A family must provide:
        ``forward_features`` (the only abstract method), and set in ``__init__``: ``feature_info``,
        ``num_classes``, ``num_features`` (the width of the vector the last layer reads) and the last
        layer itself at ``classifier_name``, built with ``self._make_classifier(num_classes)``.

    The head methods are implemented here once, on these conventions:
        classifier_name: dotted module path of the last layer, ``"fc"`` by default. A family names its
            own (``"classifier"``, ``"head"``, ``"classifier.6"``) where reference checkpoints fix the
            state-dict keys.
        forward_pre_logits(features): global average pool of the last map, then ``self.dropout`` when
            the family registers a module of that name (dropout before the classifier).
        forward_head(features) = get_classifier()(forward_pre_logits(features)), so a zero-class model
            returns exactly the pre-logits.
        get_classifier() = the module at ``classifier_name``.
        reset_classifier(n): sets ``num_classes`` and puts ``_make_classifier(n)`` at ``classifier_name``.
        _make_classifier(n): ``Linear(num_features, n)`` with PyTorch's default initialisation, or
            ``Identity`` for n=0.

    A family overrides only what differs:
        ``forward_pre_logits`` for another pooling or layers between pooling and the last layer
        (token pooling, a norm, an MLP), ``_make_classifier`` for another initialisation of a fresh
        last layer, ``reset_classifier`` (calling ``super()``) to replace further layers in step
        (auxiliary heads).
    """

    classifier_name: ClassVar[str] = "fc"
    feature_info: list[FeatureInfo]
    num_classes: int
    num_features: int

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]: ...

    # How ``forward_pre_logits`` pools the last map (timm's ``global_pool``): "avg", "max" or "avgmax"
    # (their mean). Families that pool otherwise (tokens, attention) override forward_pre_logits and
    # accept only "avg" in ``set_global_pool``.
    global_pool: str = "avg"

    def forward_pre_logits(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The ``[B, num_features]`` vector the last layer reads: global pool (+ dropout)."""
        last = features[-1]
        if self.global_pool == "avg":
            x = last.mean((2, 3))
        elif self.global_pool == "max":
            x = last.amax((2, 3))
        else:
            x = 0.5 * (last.mean((2, 3)) + last.amax((2, 3)))
        dropout = self._modules.get("dropout")
        return x if dropout is None else dropout(x)

    def set_global_pool(self, kind: str) -> None:
        """Choose the global pooling of the head (timm's ``global_pool`` keyword)."""
        own_pooling = type(self).forward_pre_logits is not Classifier.forward_pre_logits
        allowed = ("avg",) if own_pooling else ("avg", "max", "avgmax")
        if kind not in allowed:
            raise ValueError(
                f"global_pool={kind!r} is not available for {type(self).__name__}; it accepts {', '.join(allowed)}"
            )
        self.global_pool = kind

    def forward_head(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self.get_classifier()(self.forward_pre_logits(features))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.classifier_name)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        parent, _, name = self.classifier_name.rpartition(".")
        setattr(self.get_submodule(parent), name, self._make_classifier(num_classes))

    def _make_classifier(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
