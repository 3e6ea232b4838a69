"""Dense detectors: one prediction per anchor / grid point, then decode + NMS (YOLO; SSD). RetinaNet and FCOS
resize their own images and keep torchvision's per-(location, class) selection instead
(:mod:`cvzoo.models.detection.onestage.common`).

A dense detector writes three pieces and gets the :class:`~cvzoo.models.detection.base.Detector`
contract from them:

- ``raw_outputs(images) -> dict[str, Tensor]``: the head's maps, the same in train and eval (what
  ``cvzoo export`` traces, what test-time augmentation re-runs);
- ``compute_loss(outputs, targets) -> {"loss", **parts}``: its criterion;
- ``decode(outputs) -> [B, A, 4 + K]``: xyxy boxes in input pixels with class scores in [0, 1].

``forward(images)`` returns the raw maps (so export and TTA keep one code path), ``forward(images,
targets)`` the losses; ``predict`` is decode + class-wise (Soft-)NMS. One forward serves validation's
losses and detections.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cvzoo.models.detection.base import Detections, Detector


class DenseDetector(Detector):
    """Base of the detectors that decode every anchor / point and keep the best by NMS.

    Subclasses set ``num_classes`` and ``strides`` (one per level, finest first).
    """

    strides: tuple[int, ...]

    @abstractmethod
    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, 3, H, W]`` (sides multiples of the largest stride) -> the head's raw maps."""

    @abstractmethod
    def compute_loss(self, outputs: dict[str, torch.Tensor],
                     targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Training losses of ``raw_outputs``: ``{"loss": total (the family's reduction), **detached parts}``."""

    @abstractmethod
    def decode(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded predictions ``[B, A, 4 + num_classes]``: xyxy boxes in input pixels, class scores in [0, 1]."""

    def decode_candidates(self, outputs: dict[str, torch.Tensor], min_score: float) -> torch.Tensor:
        """:meth:`decode` for NMS at confidence ``min_score``: rows whose best class score does not exceed it
        are dropped by NMS anyway, so a detector may leave their boxes undecoded (YOLOv8 does)."""
        return self.decode(outputs)

    def forward(self, images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]] | None = None,
                image_sizes: Sequence[tuple[int, int]] | None = None) -> dict[str, torch.Tensor]:
        """Raw maps, or with ``targets`` the training losses. ``image_sizes`` is not needed: padding is
        background to a dense detector, as YOLO's letterbox grey is."""
        outputs = self.raw_outputs(images)
        return outputs if targets is None else self.compute_loss(outputs, targets)

    def postprocess(
        self,
        outputs: dict[str, torch.Tensor],
        conf_threshold: float = 0.25,
        iou_threshold: float = 0.7,
        max_detections: int = 300,
        classes: Sequence[int] | None = None,
        soft_nms: str | None = None,
        agnostic: bool = False,
    ) -> list[Detections]:
        """Decode, threshold and run (Soft-)NMS per image; boxes stay in network-input pixels."""
        return nms_postprocess(
            self.decode_candidates(outputs, conf_threshold), conf_threshold, iou_threshold, max_detections,
            classes, soft_nms, agnostic,
        )

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
        """Detections after NMS; thresholds left None are 0.25 confidence, 0.7 IoU, 300 per image."""
        # Through forward (not raw_outputs), so that hooks on the model see prediction too.
        return self.postprocess(self(images), 0.25 if conf_threshold is None else conf_threshold,
                                0.7 if iou_threshold is None else iou_threshold,
                                300 if max_detections is None else max_detections, classes, soft_nms, agnostic)

    def export_module(self) -> nn.Module:
        """Images -> decoded predictions ``[B, A, 4 + K]`` (NMS left to the reader, or added by
        ``cvzoo.models.detection.graph_nms.NmsDetector``)."""
        return DecodedDetector(self)

    def validate(self, images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]],
                 image_sizes: Sequence[tuple[int, int]] | None = None,
                 **settings: Any) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        outputs = self(images)
        settings = {k: v for k, v in settings.items() if v is not None}
        return self.compute_loss(outputs, targets), self.postprocess(outputs, **settings)


class DecodedDetector(nn.Module):
    """Export wrapper: images -> decoded predictions ``[B, A, 4 + K]`` (xyxy input pixels, class scores)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.decode(self.model(images))


def nms_postprocess(
    predictions: torch.Tensor,
    conf_threshold: float = 0.25,
    iou_threshold: float = 0.7,
    max_detections: int = 300,
    classes: Sequence[int] | None = None,
    soft_nms: str | None = None,
    agnostic: bool = False,
    max_candidates: int = 30000,
) -> list[Detections]:
    """``[B, A, 4 + K]`` decoded predictions -> per-image Detections (best class per box, class-wise NMS).

    ``soft_nms`` = "linear" or "gaussian" replaces hard NMS by Soft-NMS (Bodla et al., 2017).
    """
    from cvzoo.ops.nms import batched_nms
    from cvzoo.ops.nms import soft_nms as soft_nms_fn

    results = []
    for pred in predictions:
        boxes, scores_all = pred[:, :4], pred[:, 4:]
        scores, labels = scores_all.max(dim=1)
        keep = scores > conf_threshold
        if classes is not None:
            keep &= torch.isin(labels, torch.as_tensor(list(classes), device=labels.device))
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        if len(scores) > max_candidates:
            top = scores.topk(max_candidates).indices
            boxes, scores, labels = boxes[top], scores[top], labels[top]
        groups = torch.zeros_like(labels) if agnostic else labels
        if soft_nms:
            kept, kept_scores = soft_nms_fn(boxes, scores, iou_threshold=iou_threshold, method=soft_nms, idxs=groups)
            # Soft-NMS re-scores the survivors: re-rank by the decayed scores.
            order = kept_scores.argsort(descending=True)[:max_detections]
            kept, kept_scores = kept[order], kept_scores[order]
        else:
            kept = batched_nms(boxes, scores, groups, iou_threshold)[:max_detections]
            kept_scores = scores[kept]
        results.append(Detections(boxes[kept], kept_scores, labels[kept]))
    return results
