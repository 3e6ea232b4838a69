"""The ``reduction`` argument shared by every loss."""

from __future__ import annotations

import torch

from cvzoo.ops import ShapeError

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(reduction: str, where: str) -> None:
    """Raise ValueError unless ``reduction`` is ``"none"``, ``"mean"`` or ``"sum"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")


def reduce_loss(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``reduction``; the mean of an empty tensor is 0 (with a graph), not NaN."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean() if loss.numel() > 0 else loss.sum() * 0.0


def check_same_shape(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], where: str) -> None:
    """Raise ShapeError unless ``a`` and ``b`` are tensors of identical shape."""
    for name, t in zip(names, (a, b)):
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"{where}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if a.shape != b.shape:
        raise ShapeError(
            f"{where}: {names[0]} and {names[1]} must have the same shape, got {list(a.shape)} and {list(b.shape)}"
        )
