"""Focal-loss family: focal (RetinaNet; sigmoid for dense detectors, softmax for pixel classes),
varifocal (VFNet), quality focal and distribution focal (GFL). All work on logits through
``binary_cross_entropy_with_logits`` / ``log_softmax``, which stay finite for logits of any magnitude."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvzoo.losses._reduce import check_reduction, check_same_shape, reduce_loss
from cvzoo.ops import ShapeError


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection", eq. 5).

    ``FL = -alpha_t (1 - p_t)^gamma log(p_t)``: the ``(1 - p_t)^gamma`` factor down-weights the many easy
    negatives of a dense detector. Same values as ``torchvision.ops.sigmoid_focal_loss``.

    Args:
        inputs: ``[...]`` logits.
        targets: ``[...]`` binary (or soft) targets in ``[0, 1]``, same shape.
        alpha: weight of the positives in ``[0, 1]`` (negatives get ``1 - alpha``); < 0 disables it.
        gamma: focusing exponent (0 gives BCE).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
    """
    check_same_shape(inputs, targets, ("inputs", "targets"), "sigmoid_focal_loss")
    check_reduction(reduction, "sigmoid_focal_loss")
    targets = targets.to(inputs.dtype)
    prob = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return reduce_loss(loss, reduction)


def softmax_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float = 2.0,
    weight: torch.Tensor | None = None,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Multi-class focal loss ``-(1 - p_t)^gamma log p_t`` (Lin et al. 2017, eq. 5 with a softmax),
    averaged over the pixels whose target is not ``ignore_index``.

    Args:
        logits: ``[B, K, ...]`` class logits (computed in float32).
        targets: ``[B, ...]`` int64 class indices, ``ignore_index`` for pixels left out.
        gamma: focusing exponent (0 gives cross-entropy).
        weight: optional ``[K]`` class weights; each pixel is scaled by its true class's weight (the
            mean still divides by the pixel count, unlike ``F.cross_entropy``'s weighted mean).
        ignore_index: target value of the ignored pixels.
    """
    valid = targets != ignore_index
    safe = torch.where(valid, targets, torch.zeros_like(targets))
    log_p = F.log_softmax(logits.float(), dim=1).gather(1, safe[:, None]).squeeze(1)
    loss = -((1 - log_p.exp()) ** gamma) * log_p
    if weight is not None:
        loss = loss * weight.to(loss)[safe]
    return (loss * valid).sum() / valid.sum().clamp(min=1)


def varifocal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.75,
    gamma: float = 2.0,
    reduction: str = "none",
    positive: torch.Tensor | None = None,
) -> torch.Tensor:
    """Varifocal loss (Zhang et al. 2021, "VarifocalNet", eq. 2).

    ``VFL(p, q) = -q (q log p + (1 - q) log(1 - p))`` for positives (``q > 0``, the IoU-aware target) and
    ``-alpha p^gamma log(1 - p)`` for negatives (``q = 0``): only negatives are focally down-weighted,
    positives are weighted by their quality ``q``.

    Args:
        inputs: ``[...]`` logits.
        targets: ``[...]`` IoU-aware scores ``q`` in ``[0, 1]`` (0 for negatives), same shape.
        alpha, gamma: weight and focusing exponent of the negatives.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        positive: ``[...]`` bool, the positives when they are known apart from ``q`` (a set-prediction
            detector's matched pairs): a matched box that misses its object (``q = 0``) then gets weight 0
            instead of being pushed down as a negative (RT-DETR's form). None: ``q > 0``.
    """
    check_same_shape(inputs, targets, ("inputs", "targets"), "varifocal_loss")
    check_reduction(reduction, "varifocal_loss")
    targets = targets.to(inputs.dtype)
    if positive is None:
        positive = targets > 0
    else:
        check_same_shape(inputs, positive, ("inputs", "positive"), "varifocal_loss")
    positive = positive.to(inputs.dtype)
    weight = positive * targets + (1 - positive) * alpha * torch.sigmoid(inputs) ** gamma
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none") * weight
    return reduce_loss(loss, reduction)


def quality_focal_loss(
    inputs: torch.Tensor, targets: torch.Tensor, beta: float = 2.0, reduction: str = "none"
) -> torch.Tensor:
    """Quality focal loss (Li et al. 2020, "Generalized Focal Loss", eq. 5).

    ``QFL(s) = -|y - s|^beta ((1 - y) log(1 - s) + y log s)`` with ``s = sigmoid(input)`` and the soft
    target ``y`` (the IoU of the predicted box at the GT's class, 0 elsewhere).

    Args:
        inputs: ``[..., C]`` logits.
        targets: ``[..., C]`` soft targets in ``[0, 1]``.
        beta: focusing exponent.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
    """
    check_same_shape(inputs, targets, ("inputs", "targets"), "quality_focal_loss")
    check_reduction(reduction, "quality_focal_loss")
    targets = targets.to(inputs.dtype)
    scale = (targets - torch.sigmoid(inputs)).abs() ** beta
    loss = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none") * scale
    return reduce_loss(loss, reduction)


def distribution_focal_loss(
    pred_dist: torch.Tensor, target: torch.Tensor, reduction: str = "none"
) -> torch.Tensor:
    """Distribution focal loss (Li et al. 2020, "Generalized Focal Loss", eq. 6).

    A continuous target ``y`` between bins ``y_l = floor(y)`` and ``y_r = y_l + 1`` is learnt as
    ``-((y_r - y) log S_l + (y - y_l) log S_r)``, S the softmax over the ``reg_max + 1`` bins, so the
    distribution concentrates around ``y`` and its expectation regresses it.

    Args:
        pred_dist: ``[N, reg_max + 1]`` logits over the bins.
        target: ``[N]`` float targets in ``[0, reg_max]`` (in bin units).
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.

    Returns:
        ``[N]`` (``"none"``) or a scalar.
    """
    check_reduction(reduction, "distribution_focal_loss")
    if pred_dist.ndim != 2 or target.shape != pred_dist.shape[:1]:
        raise ShapeError(
            "distribution_focal_loss: expected pred_dist [N, reg_max + 1] and target [N], "
            f"got {list(pred_dist.shape)} and {list(target.shape)}"
        )
    reg_max = pred_dist.shape[1] - 1
    if target.numel() and (float(target.min()) < 0 or float(target.max()) > reg_max):
        raise ValueError(
            f"distribution_focal_loss: target must lie in [0, {reg_max}], "
            f"got [{float(target.min()):.4g}, {float(target.max()):.4g}]"
        )
    target = target.to(pred_dist.dtype)
    left = target.floor().long().clamp(max=reg_max)
    right = (left + 1).clamp(max=reg_max)
    weight_left = left.to(target) + 1 - target  # y_r - y, with y_r = y_l + 1 even at the last bin
    log_prob = F.log_softmax(pred_dist, dim=-1)
    loss = -(
        log_prob.gather(1, left[:, None])[:, 0] * weight_left
        + log_prob.gather(1, right[:, None])[:, 0] * (1 - weight_left)
    )
    return reduce_loss(loss, reduction)


def gaussian_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 2.0, beta: float = 4.0
) -> torch.Tensor:
    """CornerNet's variant of focal loss on Gaussian-penalised heatmaps (Law & Deng 2018, eq. 1), summed.

    ``-(1 - p)^alpha log p`` where the target is 1 (a keypoint), ``-(1 - y)^beta p^alpha log(1 - p)``
    elsewhere: a negative near a keypoint (``y`` close to 1 on the Gaussian bump) is penalised less.
    The caller divides the sum by the number of objects ``N`` (eq. 1's ``1/N``).

    Args:
        logits: ``[...]`` heatmap logits (``p = sigmoid(logits)``; log-probabilities come from
            ``logsigmoid``, finite for logits of any magnitude).
        targets: ``[...]`` same shape, in ``[0, 1]``, exactly 1 at the keypoints.
        alpha, beta: the focusing and the Gaussian-penalty exponents (2 and 4 in the paper).

    Returns:
        A scalar: the sum over all elements.
    """
    check_same_shape(logits, targets, ("logits", "targets"), "gaussian_focal_loss")
    targets = targets.to(logits.dtype)
    prob = torch.sigmoid(logits)
    positive = targets.eq(1)
    pos_loss = (1 - prob).pow(alpha) * F.logsigmoid(logits)
    neg_loss = (1 - targets).pow(beta) * prob.pow(alpha) * F.logsigmoid(-logits)
    return -torch.where(positive, pos_loss, neg_loss).sum()
