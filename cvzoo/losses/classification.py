"""Classification losses: label smoothing (Szegedy et al. 2016) and soft targets (mixup / cutmix)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.losses._reduce import check_reduction, check_same_shape, reduce_loss
from cvzoo.ops import ShapeError


def label_smoothing_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    smoothing: float = 0.1,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross entropy against ``(1 - eps) * one_hot + eps / C`` (Szegedy et al. 2016, "Rethinking the
    Inception Architecture", sec. 7): ``(1 - eps) * NLL + eps * mean_c(-log p_c)``.

    Keeps the logits from growing without bound to fit one-hot targets (better calibration). Same
    values as ``F.cross_entropy(..., label_smoothing=eps)``.

    Args:
        logits: ``[N, C]`` (or ``[N, C, d1, ...]``, e.g. per pixel).
        target: ``[N]`` (or ``[N, d1, ...]``) int64 class indices.
        smoothing: ``eps`` in ``[0, 1)``.
        ignore_index: target value that contributes nothing (and is excluded from the mean).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
    """
    check_reduction(reduction, "label_smoothing_cross_entropy")
    if not 0 <= smoothing < 1:
        raise ValueError(f"label_smoothing_cross_entropy: smoothing must lie in [0, 1), got {smoothing}")
    if logits.ndim < 2 or target.shape != logits.shape[:1] + logits.shape[2:]:
        raise ShapeError(
            "label_smoothing_cross_entropy: expected logits [N, C, ...] and target [N, ...], "
            f"got {list(logits.shape)} and {list(target.shape)}"
        )
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target)).long()
    if safe_target.numel() and (int(safe_target.min()) < 0 or int(safe_target.max()) >= logits.shape[1]):
        raise ValueError(
            f"label_smoothing_cross_entropy: target values must lie in [0, {logits.shape[1]}) "
            f"or equal ignore_index={ignore_index}"
        )
    log_prob = F.log_softmax(logits, dim=1)
    nll = -log_prob.gather(1, safe_target.unsqueeze(1)).squeeze(1)
    uniform = -log_prob.mean(dim=1)
    loss = ((1 - smoothing) * nll + smoothing * uniform) * valid
    if reduction == "mean":
        # Mean over the non-ignored targets, as F.cross_entropy does.
        return loss.sum() / valid.sum().clamp(min=1)
    return reduce_loss(loss, reduction)


def soft_target_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """``sum_c -t_c log softmax(x)_c`` for soft targets ``[N, C]`` (mixup, cutmix, distillation)."""
    check_same_shape(logits, target, ("logits", "target"), "soft_target_cross_entropy")
    check_reduction(reduction, "soft_target_cross_entropy")
    if logits.ndim < 2:
        raise ShapeError(f"soft_target_cross_entropy: expected [N, C, ...], got {list(logits.shape)}")
    loss = -(target.to(logits.dtype) * F.log_softmax(logits, dim=1)).sum(dim=1)
    return reduce_loss(loss, reduction)


class SoftTargetCrossEntropy(nn.Module):
    """Module form of :func:`soft_target_cross_entropy` (targets from mixup / cutmix are ``[N, C]``)."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction, "SoftTargetCrossEntropy")
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(logits, target, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
