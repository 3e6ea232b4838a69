"""What every detector shares: the Detections type, target validation and the Detector contract.

Contract (DESIGN.md): ``forward(images [B, 3, H, W]) -> dict[str, Tensor]`` (raw head outputs, the same
in train and eval, export-friendly); ``loss(outputs, targets) -> dict[str, Tensor]`` with a ``"loss"``
entry plus named parts; ``postprocess(outputs, image_sizes, ...) -> list[Detections]``.

Targets are the canonical per-image dicts: ``{"boxes": float32 [N, 4] xyxy absolute pixels of the
network input, "labels": int64 [N] 0-based}``. ``validate_targets`` is the one place that checks them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


class TargetError(ValueError):
    """A detection target that breaks the canonical contract (shape, dtype, class id, NaN)."""


@dataclass
class Detections:
    """Detections of one image. ``boxes`` xyxy absolute pixels ``[N, 4]``, ``scores [N]``, ``labels [N]``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.boxes)

    def to(self, device: torch.device | str) -> Detections:
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device))

    def to_dict(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Plain Python rows: ``[{"box": [x1, y1, x2, y2], "score", "label", "class"}]``."""
        rows = []
        for box, score, label in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist()):
            row = {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": int(label)}
            if class_names is not None:
                row["class"] = class_names[int(label)]
            rows.append(row)
        return rows

    @staticmethod
    def empty(device: torch.device | str = "cpu") -> Detections:
        return Detections(
            torch.zeros((0, 4), device=device), torch.zeros(0, device=device),
            torch.zeros(0, dtype=torch.int64, device=device),
        )


def validate_targets(
    targets: Sequence[dict[str, torch.Tensor]],
    image_size: tuple[int, int],
    num_classes: int,
    names: Sequence[str] | None = None,
    min_size: float = 1.0,
) -> list[dict[str, torch.Tensor]]:
    """Check targets, clip boxes to ``image_size = (H, W)`` and drop degenerate ones.

    Raises ``TargetError`` (naming the image) for a wrong shape/dtype, a non-finite coordinate or a
    class id outside ``[0, num_classes)``. Boxes partly outside the image are clipped; boxes thinner
    than ``min_size`` pixels after clipping (or inverted) are dropped with their labels.
    """
    height, width = image_size
    cleaned = []
    for i, target in enumerate(targets):
        where = names[i] if names is not None else f"image {i} of the batch"
        boxes, labels = target.get("boxes"), target.get("labels")
        if boxes is None or labels is None:
            raise TargetError(f"{where}: target needs 'boxes' and 'labels', got keys {sorted(target)}")
        if boxes.ndim != 2 or boxes.shape[-1] != 4:
            raise TargetError(f"{where}: boxes must be [N, 4] xyxy, got shape {tuple(boxes.shape)}")
        if labels.ndim != 1 or len(labels) != len(boxes):
            raise TargetError(f"{where}: labels must be [N] for {len(boxes)} boxes, got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32):
            raise TargetError(f"{where}: labels must be integer class ids, got {labels.dtype}")
        if not torch.isfinite(boxes).all():
            raise TargetError(f"{where}: boxes contain NaN or infinite coordinates")
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            bad = labels[(labels < 0) | (labels >= num_classes)].unique().tolist()
            raise TargetError(f"{where}: class ids {bad} outside [0, {num_classes}) (the dataset has {num_classes} classes)")
        boxes = boxes.float().clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
        cleaned.append({**target, "boxes": boxes[keep], "labels": labels[keep].long()})
    return cleaned


def pad_targets(targets: Sequence[dict[str, torch.Tensor]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Batch per-image targets into padded tensors for vectorised assigners.

    Returns ``labels [B, M, 1]`` (int64), ``boxes [B, M, 4]`` xyxy and ``mask [B, M, 1]`` (bool), with
    ``M`` the largest number of objects in the batch (at least 1).
    """
    batch = len(targets)
    most = max([len(t["boxes"]) for t in targets] + [1])
    labels = torch.zeros(batch, most, 1, dtype=torch.int64, device=device)
    boxes = torch.zeros(batch, most, 4, device=device)
    mask = torch.zeros(batch, most, 1, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        n = len(target["boxes"])
        if n:
            labels[i, :n, 0] = target["labels"].to(device)
            boxes[i, :n] = target["boxes"].to(device).float()
            mask[i, :n] = True
    return labels, boxes, mask


class Detector(nn.Module, ABC):
    """Base class of the detectors: subclasses set ``num_classes`` and ``strides``."""

    num_classes: int
    strides: tuple[int, ...]

    @abstractmethod
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...

    @abstractmethod
    def loss(self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Training losses: ``{"loss": total (already scaled by the batch size convention), ...parts}``."""

    @abstractmethod
    def decode(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Decoded predictions ``[B, A, 4 + num_classes]``: xyxy boxes in input pixels, class scores in [0, 1]."""

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

    def decode_candidates(self, outputs: dict[str, torch.Tensor], min_score: float) -> torch.Tensor:
        """:meth:`decode` for NMS at confidence ``min_score``: rows whose best class score does not exceed it
        are dropped by NMS anyway, so a detector may leave their boxes undecoded (YOLOv8 does)."""
        return self.decode(outputs)


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
