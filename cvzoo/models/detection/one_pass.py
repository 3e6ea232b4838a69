"""The entry points of detectors that run one pipeline for training and inference (torchvision's layout:
R-CNN, RetinaNet, FCOS, SSD), written once.

Such a detector implements ``_run(images, image_sizes, targets, settings) -> (losses, detections)``:
resize, backbone, heads, then the losses when ``targets`` are given and the detections when ``settings``
are. :class:`OnePassDetector` turns it into the contract's ``forward`` (losses, or detections with the
model's own thresholds), ``predict`` (thresholds per call) and ``validate`` (both from one pass).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from cvzoo.models.detection.base import Detections, Detector, image_sizes_or_full

Target = dict[str, torch.Tensor]


@dataclass
class DetectSettings:
    """Inference thresholds of a detector (``predict`` may override them per call)."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    classes: Sequence[int] | None = None  # object classes (0-based) to keep; None keeps all
    agnostic: bool = False
    soft_nms: str | None = None


class OnePassDetector(Detector):
    """A detector whose ``_run`` gives losses and detections from one pass; ``detect_settings`` holds its
    own thresholds (set in ``__init__``)."""

    detect_settings: DetectSettings

    @abstractmethod
    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        """Losses (``{}`` without targets) and detections (``[]`` without settings) of one pass."""

    @staticmethod
    def image_crops(images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None
                    ) -> tuple[list[tuple[int, int]], list[torch.Tensor]]:
        """Each image's true ``(H, W)`` and the image without its padding. While tracing for ONNX the sizes
        come from the tensor's shape (an ``int`` would freeze the traced image's size into the graph)."""
        if torch.onnx.is_in_onnx_export() and image_sizes is None:
            sizes = [(image.shape[-2], image.shape[-1]) for image in images]
        else:
            sizes = image_sizes_or_full(images, image_sizes)
        return sizes, [image[:, :h, :w] for image, (h, w) in zip(images, sizes)]

    def forward(self, images: torch.Tensor, targets: Sequence[Target] | None = None,
                image_sizes: Sequence[tuple[int, int]] | None = None) -> Any:
        """With ``targets`` the losses ``{"loss", **named parts}`` (the reference implementation's names),
        else the detections with the model's thresholds (``list[Detections]``)."""
        if targets is None:
            return self._run(images, image_sizes, None, self.detect_settings)[1]
        return self._run(images, image_sizes, targets, None)[0]

    def predict(
        self,
        images: torch.Tensor,
        image_sizes: Sequence[tuple[int, int]] | None = None,
        conf_threshold: float | None = None,
        iou_threshold: float | None = None,
        max_detections: int | None = None,
        classes: Sequence[int] | None = None,
        soft_nms: str | None = None,
        agnostic: bool = False,
    ) -> list[Detections]:
        """Detections per image in the pixels of ``images``; a threshold left None is the model's own."""
        settings = self.settings(conf_threshold, iou_threshold, max_detections, classes, soft_nms, agnostic)
        return self._run(images, image_sizes, None, settings)[1]

    def validate(self, images: torch.Tensor, targets: Sequence[Target],
                 image_sizes: Sequence[tuple[int, int]] | None = None,
                 **settings: Any) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        """Losses and detections from one pass (call in eval mode)."""
        return self._run(images, image_sizes, targets, self.settings(**settings))

    def settings(self, conf_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int | None = None, classes: Sequence[int] | None = None,
                 soft_nms: str | None = None, agnostic: bool = False) -> DetectSettings:
        """The inference settings, the model's own where an argument is None."""
        own = self.detect_settings
        return DetectSettings(
            own.score_thresh if conf_threshold is None else conf_threshold,
            own.nms_thresh if iou_threshold is None else iou_threshold,
            own.detections_per_img if max_detections is None else max_detections,
            classes, agnostic, soft_nms,
        )
