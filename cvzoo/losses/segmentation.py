"""The pixel-wise criterion of semantic segmentation: cross-entropy, Dice, softmax focal, or a sum."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cvzoo.losses.dice import dice_loss
from cvzoo.losses.focal import softmax_focal_loss

SEGMENTATION_LOSSES = ("ce", "dice", "focal", "ce+dice", "focal+dice")


@dataclass(frozen=True)
class SegmentationLoss:
    """``loss(logits [B, K, H, W], targets [B, H, W]) -> scalar``, pixels of ``ignore_index`` left out.

    ``kind`` is ``ce``, ``dice``, ``focal``, ``ce+dice`` or ``focal+dice``; in the sums the Dice term is
    weighted by ``dice_weight``. ``class_weights`` (K values) weight the cross-entropy / focal terms,
    ``label_smoothing`` applies to the cross-entropy. A plain value (no tensors), so a model holding
    one adds nothing to its state dict.
    """

    kind: str = "ce"
    dice_weight: float = 1.0
    focal_gamma: float = 2.0
    class_weights: tuple[float, ...] | None = None
    label_smoothing: float = 0.0
    ignore_index: int = 255

    def __post_init__(self) -> None:
        if self.kind not in SEGMENTATION_LOSSES:
            raise ValueError(f"segmentation loss must be one of {SEGMENTATION_LOSSES}, got {self.kind!r}")

    def class_weight_tensor(self, num_classes: int, device: torch.device) -> torch.Tensor | None:
        if self.class_weights is None:
            return None
        if len(self.class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(self.class_weights)} values for {num_classes} classes")
        return torch.tensor([float(w) for w in self.class_weights], device=device)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = self.class_weight_tensor(logits.shape[1], logits.device)
        total = logits.new_zeros((), dtype=torch.float32)
        if self.kind.startswith("ce"):
            total = total + F.cross_entropy(logits.float(), targets, weight=weight, ignore_index=self.ignore_index,
                                            label_smoothing=self.label_smoothing)
        if self.kind.startswith("focal"):
            total = total + softmax_focal_loss(logits, targets, self.focal_gamma, weight, self.ignore_index)
        if self.kind.endswith("dice"):
            factor = 1.0 if self.kind == "dice" else self.dice_weight
            total = total + factor * dice_loss(logits.float(), targets, mode="multiclass",
                                               ignore_index=self.ignore_index)
        return total


__all__ = ["SEGMENTATION_LOSSES", "SegmentationLoss"]
