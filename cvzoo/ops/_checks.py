"""Input validation shared by the ops and the losses: one error type, messages that name the argument."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class ShapeError(ValueError):
    """A tensor argument has the wrong shape, dtype or value range for the op it was passed to."""


def check_last_dim(tensor: torch.Tensor, size: int, name: str, where: str) -> None:
    """Raise ShapeError unless ``tensor`` is a tensor whose last dimension has ``size`` entries."""
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim == 0 or tensor.shape[-1] != size:
        raise ShapeError(f"{where}: {name} must have shape [..., {size}], got {list(tensor.shape)}")


def check_ndim(tensor: torch.Tensor, ndim: int, name: str, where: str, layout: str) -> None:
    """Raise ShapeError unless ``tensor`` has ``ndim`` dimensions; ``layout`` (e.g. "[N, 4]") goes in the message."""
    if not isinstance(tensor, torch.Tensor):
        raise ShapeError(f"{where}: {name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.ndim != ndim:
        raise ShapeError(f"{where}: {name} must have shape {layout}, got {list(tensor.shape)}")


def check_choice(value: str, choices: Sequence[str], name: str, where: str) -> None:
    """Raise ValueError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{where}: {name} must be one of {list(choices)}, got {value!r}")


class MaskFormatError(ValueError):
    """A run-length encoded mask or a polygon is malformed (corrupt counts string, wrong total, ...).

    Attributes:
        index: position of the offending item when a batch of masks was given, else None; callers
            that know what the items are (annotation ids, result positions) use it to name the culprit.
    """

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index
