"""What every detector shares: the Detections type, target validation and the Detector contract.

The contract (DESIGN.md) has two entry points, the same for every family, so the detection task never
asks which detector it runs:

- ``model(images, targets, image_sizes) -> {"loss": total, **named parts}``: training. It goes through
  ``forward`` so that DDP and other wrappers see the call.
- ``model.predict(images, image_sizes, ...) -> list[Detections]``: boxes in the pixels of ``images``.

``images`` is a padded batch ``float [B, 3, H, W]`` of RGB in [0, 1] (the model normalises as it
needs); ``image_sizes`` gives each image's true ``(height, width)`` inside the padding (bottom/right),
``None`` meaning every image fills the batch. What depends on the model is the model's: its loss
reduction, parameter groups, input policy and default recipe (class attributes and methods below).

Dense detectors (YOLO; SSD to come) build both entry points from a raw forward, a
criterion and decode + NMS: ``cvzoo.models.detection.dense.DenseDetector``. RetinaNet and FCOS resize their
own images as R-CNN does: ``cvzoo.models.detection.onestage.common.OneStageDetector``.

Targets are the canonical per-image dicts: ``{"boxes": float32 [N, 4] xyxy absolute pixels of the
network input, "labels": int64 [N] 0-based}`` and, for instance segmentation, ``"masks": uint8
[N, H, W]``. ``validate_targets`` is the one place that checks them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn


class TargetError(ValueError):
    """A detection target that breaks the canonical contract (shape, dtype, class id, NaN)."""


@dataclass
class Detections:
    """Detections of one image: ``boxes`` xyxy absolute pixels ``[N, 4]``, ``scores [N]``, ``labels [N]``
    and, from an instance-segmentation model, ``masks`` ``[N, H, W]`` float in [0, 1] (the image's size)."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.boxes)

    def to(self, device: torch.device | str) -> Detections:
        masks = None if self.masks is None else self.masks.to(device)
        return Detections(self.boxes.to(device), self.scores.to(device), self.labels.to(device), masks)

    def select(self, keep: torch.Tensor) -> Detections:
        """The detections at ``keep`` (a bool mask or indices)."""
        masks = None if self.masks is None else self.masks[keep]
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], masks)

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
    image_size: tuple[int, int] | Sequence[tuple[int, int]],
    num_classes: int,
    names: Sequence[str] | None = None,
    min_size: float = 1.0,
) -> list[dict[str, torch.Tensor]]:
    """Check targets, clip boxes to the image size and drop degenerate ones.

    ``image_size`` is one ``(H, W)`` for the whole batch or one per image (a padded batch of images of
    different sizes). Raises ``TargetError`` (naming the image) for a wrong shape/dtype, a non-finite
    coordinate, a class id outside ``[0, num_classes)`` or instance masks of the wrong size. Boxes partly
    outside the image are clipped; boxes thinner than ``min_size`` pixels after clipping (or inverted) are
    dropped with their labels (and masks).
    """
    if len(image_size) and isinstance(image_size[0], Sequence):
        sizes = [tuple(size) for size in image_size]
    else:
        sizes = [tuple(image_size)] * len(targets)
    cleaned = []
    for i, target in enumerate(targets):
        height, width = (int(v) for v in sizes[i])
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
        masks = target.get("masks")
        if masks is not None and (masks.ndim != 3 or len(masks) != len(boxes) or masks.shape[-2:] != (height, width)):
            raise TargetError(f"{where}: masks must be [N, H, W] = [{len(boxes)}, {height}, {width}] (one per box, "
                              f"the image's size), got {tuple(masks.shape)}")
        boxes = boxes.float().clone()
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
        kept = {**target, "boxes": boxes[keep], "labels": labels[keep].long()}
        if masks is not None:
            kept["masks"] = masks[keep]
        cleaned.append(kept)
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


@dataclass(frozen=True)
class InputPolicy:
    """How the task prepares a detector's images (the model's choice, not the task's).

    Attributes:
        resize: ``"letterbox"``: the task letterboxes every image to ``data.img_size`` (YOLO) and maps the
            detections back; ``"model"``: images keep their own size in a padded batch and the model
            resizes them itself (R-CNN's shorter side to ``min_size``, longer side at most ``max_size``),
            returning boxes in the pixels it was given.
        size_divisible: the sides of a padded batch are multiples of this (the largest stride).
    """

    resize: Literal["letterbox", "model"] = "letterbox"
    size_divisible: int = 32


class Detector(nn.Module, ABC):
    """The contract every detector implements (see the module docstring).

    Class attributes a family sets:
        input_policy: how the task prepares images (:class:`InputPolicy`).
        loss_reduction: ``"mean"``: the training loss is a mean over the batch's images, so the trainer
            divides it by the number of accumulated batches; ``"sum"``: a sum over images (YOLO's loss is
            the mean times the batch size), accumulated batches add up unscaled.
        default_recipe: dotted config keys the family trains with when the user sets nothing else
            (``cvzoo.api.build_config`` applies them after the task defaults, before any recipe file).
        recipe_name: a few words naming where the recipe comes from, for the run's settings line.
        exportable: ``cvzoo export`` can trace the model (``export_module`` is then defined).
        predicts_masks: its detections carry instance masks (the instance-segmentation task needs it).
        validation_settings: the ``predict`` thresholds validation uses (empty: the model's own). YOLO
            validates at confidence 0.001 to keep the low-score tail the AP integral needs.
        augment_keys: the ``detect.augment`` keys the family trains with; the detection task rejects a value
            other than the family's default for any other key (an SSD-only option on an R-CNN). By default
            those the dataset applies to images at their own size: flip and HSV jitter.
    """

    num_classes: int
    input_policy: ClassVar[InputPolicy] = InputPolicy()
    loss_reduction: ClassVar[Literal["mean", "sum"]] = "mean"
    default_recipe: ClassVar[dict[str, Any]] = {}
    recipe_name: ClassVar[str] = ""
    exportable: ClassVar[bool] = False
    predicts_masks: ClassVar[bool] = False
    validation_settings: ClassVar[dict[str, Any]] = {}
    augment_keys: ClassVar[tuple[str, ...]] = ("hflip", "hsv_h", "hsv_s", "hsv_v")

    @abstractmethod
    def forward(self, images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]] | None = None,
                image_sizes: Sequence[tuple[int, int]] | None = None) -> Any:
        """With ``targets``: the training losses ``{"loss": total, **named detached parts}``. Without:
        the family's raw outputs (dense maps for export) or its detections."""

    @abstractmethod
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
        """Detections per image in the pixels of ``images`` (call in eval mode, under ``no_grad``); a
        threshold left None is the model's own (YOLO: 0.25, 0.7, 300; R-CNN: 0.05, 0.5, 100)."""

    def validate(self, images: torch.Tensor, targets: Sequence[dict[str, torch.Tensor]],
                 image_sizes: Sequence[tuple[int, int]] | None = None,
                 **settings: Any) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        """Validation losses and detections of one batch; a family that can share one forward between
        the two overrides this (the dense base does)."""
        return self(images, targets, image_sizes), self.predict(images, image_sizes, **settings)

    def export_module(self) -> nn.Module:
        """The module ``cvzoo export`` traces (images in, tensors out), for a detector that is ``exportable``."""
        raise NotImplementedError(f"{type(self).__name__} has no export path yet")

    def param_groups(self, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """Optimizer groups: ``model.backbone`` at ``lr * backbone_lr_mult``, the rest at ``lr``; norm and
        1-D parameters without weight decay (``cvzoo.models.transfer.param_groups``)."""
        from cvzoo.models.transfer import param_groups

        return param_groups(self, lr, backbone_lr_mult=backbone_lr_mult, weight_decay=weight_decay, split="backbone")


def image_sizes_or_full(images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None) -> list[tuple[int, int]]:
    """``image_sizes`` checked against the batch, or every image's size = the batch's when ``None``."""
    height, width = images.shape[-2:]
    if image_sizes is None:
        return [(int(height), int(width))] * images.shape[0]
    if len(image_sizes) != images.shape[0]:
        raise ValueError(f"{len(image_sizes)} image sizes for a batch of {images.shape[0]} images")
    sizes = [(int(h), int(w)) for h, w in image_sizes]
    for h, w in sizes:
        if not (0 < h <= height and 0 < w <= width):
            raise ValueError(f"image size {(h, w)} does not fit the padded batch {(int(height), int(width))}")
    return sizes
