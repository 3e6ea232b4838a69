"""Dice loss for segmentation (Milletari et al. 2016, "V-Net", eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvzoo.losses._reduce import check_reduction, reduce_loss
from cvzoo.ops import ShapeError


def dice_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    mode: str = "multiclass",
    ignore_index: int | None = None,
    smooth: float = 1e-6,
    from_logits: bool = True,
    include_background: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    """``1 - (2 |P n T| + smooth) / (|P| + |T| + smooth)`` per image and class, on soft predictions.

    The Dice coefficient directly measures overlap, so it is insensitive to the foreground/background
    imbalance that dominates pixel-wise cross entropy on small structures. ``smooth`` keeps a class that is
    absent from both prediction and target at Dice 1 (loss 0).

    Args:
        inputs: logits (or probabilities if ``from_logits=False``): ``[B, C, ...]`` for ``"multiclass"``
            (softmax over C); ``[B, ...]`` or ``[B, 1, ...]`` for ``"binary"`` (sigmoid).
        targets: ``"multiclass"``: ``[B, ...]`` int64 class map; ``"binary"``: 0/1 map of the shape of inputs.
        mode: ``"multiclass"`` or ``"binary"``.
        ignore_index: target value (e.g. 255) of pixels left out of every sum.
        smooth: added to numerator and denominator.
        from_logits: apply softmax/sigmoid to ``inputs`` first.
        include_background: keep class 0 in the multiclass mean.
        reduction: ``"none"`` (``[B, C]`` per image and class) | ``"mean"`` | ``"sum"``.
    """
    check_reduction(reduction, "dice_loss")
    if mode == "binary":
        if inputs.shape != targets.shape:
            raise ShapeError(
                f"dice_loss: binary mode needs inputs and targets of one shape, "
                f"got {list(inputs.shape)} and {list(targets.shape)}"
            )
        valid = (
            torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
        )
        probs = torch.sigmoid(inputs) if from_logits else inputs
        one_hot = (targets * valid).to(probs.dtype)
        # One "class" per image: [B, 1, N].
        probs, one_hot, valid = (t.reshape(t.shape[0], 1, -1) for t in (probs, one_hot, valid))
    elif mode == "multiclass":
        if inputs.ndim < 2 or targets.shape != inputs.shape[:1] + inputs.shape[2:]:
            raise ShapeError(
                "dice_loss: multiclass mode needs inputs [B, C, ...] and targets [B, ...], "
                f"got {list(inputs.shape)} and {list(targets.shape)}"
            )
        num_classes = inputs.shape[1]
        valid = (
            torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
        )
        labels = torch.where(valid, targets, torch.zeros_like(targets)).long()
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"dice_loss: targets must lie in [0, {num_classes}) or equal ignore_index={ignore_index}"
            )
        probs = F.softmax(inputs, dim=1) if from_logits else inputs
        one_hot = F.one_hot(labels, num_classes).movedim(-1, 1).to(probs.dtype)
        probs = probs.reshape(probs.shape[0], num_classes, -1)
        one_hot = one_hot.reshape(one_hot.shape[0], num_classes, -1)
        valid = valid.reshape(valid.shape[0], 1, -1)
    else:
        raise ValueError(f"dice_loss: mode must be 'binary' or 'multiclass', got {mode!r}")

    probs = probs * valid
    one_hot = one_hot * valid
    intersection = (probs * one_hot).sum(dim=-1)
    total = probs.sum(dim=-1) + one_hot.sum(dim=-1)
    loss = 1 - (2 * intersection + smooth) / (total + smooth)  # [B, C]
    if mode == "multiclass" and not include_background:
        loss = loss[:, 1:]
    return reduce_loss(loss, reduction)
