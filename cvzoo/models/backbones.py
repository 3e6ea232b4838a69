"""Registered classifiers as the backbones of detectors and segmenters: the one place that checks the
name, dilates the last stages when asked and loads the backbone's weights.

The families then wrap the classifier for their heads: segmenters take every stage as a
``FeatureExtractor`` (``cvzoo.models.segmentation.base.feature_backbone``), YOLO takes the stages at its
strides with channel adapters (``cvzoo.models.detection.darknet.yolo_backbone``).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from torch import nn

from cvzoo.models.registry import create_model, get_entry

logger = logging.getLogger(__name__)


def dilation_flags(output_stride: int) -> tuple[bool, bool, bool]:
    """``replace_stride_with_dilation`` flags (layer2..layer4 of a 4-stage network) for an output stride."""
    flags = {32: (False, False, False), 16: (False, False, True), 8: (False, True, True)}
    if output_stride not in flags:
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    return flags[output_stride]


def create_backbone(name: str, in_channels: int = 3, weights: str | None = None, output_stride: int = 32,
                    **model_kwargs: Any) -> nn.Module:
    """The registered classifier ``name``, to serve as a backbone.

    Args:
        name: registered classification model (``resnet50``, ``vgg16``, ...).
        in_channels: image channels.
        weights: local classification checkpoint (torchvision/timm layouts go through the registered
            remaps), loaded by name and shape: what does not fit (the classifier head) is reported, skipped.
        output_stride: 8 or 16 trade the stride of the last stages for dilation (Chen et al., 2017);
            only backbones taking ``replace_stride_with_dilation`` (the ResNet family) support it.
        **model_kwargs: extra constructor arguments of the classifier.

    Raises:
        ValueError: ``name`` is not a classification model, or it cannot reach ``output_stride``.
    """
    entry = get_entry(name)
    if entry.task != "classify":
        raise ValueError(f"backbone {name!r} is a {entry.task} model, not a classifier")
    kwargs: dict[str, Any] = {"in_channels": in_channels, **model_kwargs}
    if output_stride != 32:
        if "replace_stride_with_dilation" not in inspect.signature(entry.builder).parameters:
            raise ValueError(
                f"backbone {name!r} cannot dilate its last stages; use output_stride=32 or a ResNet backbone"
            )
        kwargs["replace_stride_with_dilation"] = dilation_flags(output_stride)
    model = create_model(name, **kwargs)
    if weights:
        from cvzoo.models.weights import load_weights

        report = load_weights(model, weights, strict=False)
        logger.info("backbone weights %s: %s", weights, report.summary())
    return model
