"""Losses on embeddings for Siamese networks: contrastive (Hadsell et al. 2006), triplet
(Schroff et al. 2015, FaceNet; batch-hard mining from Hermans et al. 2017) and supervised contrastive
(Khosla et al. 2020)."""

from __future__ import annotations

import torch

from cvzoo.losses._reduce import check_reduction, check_same_shape, reduce_loss
from cvzoo.ops import ShapeError


def _distance(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    # eps inside the root keeps the gradient finite when the two embeddings coincide.
    return ((a - b) ** 2).sum(dim=-1).add(eps).sqrt()


def _check_embeddings(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str], where: str) -> None:
    check_same_shape(a, b, names, where)
    if a.ndim != 2:
        raise ShapeError(f"{where}: embeddings must be [N, D], got {list(a.shape)}")


def contrastive_loss(
    embeddings1: torch.Tensor,
    embeddings2: torch.Tensor,
    similar: torch.Tensor,
    margin: float = 1.0,
    reduction: str = "mean",
    eps: float = 1e-9,
) -> torch.Tensor:
    """Contrastive loss (Hadsell, Chopra & LeCun 2006, eq. 4), with ``d`` the Euclidean distance:
    ``0.5 d^2`` for similar pairs and ``0.5 max(0, margin - d)^2`` for dissimilar ones.

    Args:
        embeddings1, embeddings2: ``[N, D]`` embeddings of the two images of each pair.
        similar: ``[N]`` 1 (or True) for pairs of the same identity/class, 0 otherwise.
        margin: dissimilar pairs farther apart than this cost nothing.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        eps: added under the square root.
    """
    _check_embeddings(embeddings1, embeddings2, ("embeddings1", "embeddings2"), "contrastive_loss")
    check_reduction(reduction, "contrastive_loss")
    if similar.shape != embeddings1.shape[:1]:
        raise ShapeError(
            f"contrastive_loss: similar must be [{embeddings1.shape[0]}], got {list(similar.shape)}"
        )
    similar = similar.to(embeddings1.dtype)
    distance = _distance(embeddings1, embeddings2, eps)
    loss = 0.5 * (similar * distance**2 + (1 - similar) * (margin - distance).clamp(min=0) ** 2)
    return reduce_loss(loss, reduction)


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 1.0,
    reduction: str = "mean",
    eps: float = 1e-9,
) -> torch.Tensor:
    """Triplet loss (Schroff et al. 2015, "FaceNet", eq. 1 with Euclidean rather than squared distance):
    ``max(0, d(a, p) - d(a, n) + margin)``.

    Args:
        anchor, positive, negative: ``[N, D]`` embeddings; positive shares the anchor's identity.
        margin: required gap between the negative and the positive distance.
        reduction: ``"none"`` | ``"mean"`` | ``"sum"``.
        eps: added under the square root.
    """
    _check_embeddings(anchor, positive, ("anchor", "positive"), "triplet_loss")
    _check_embeddings(anchor, negative, ("anchor", "negative"), "triplet_loss")
    check_reduction(reduction, "triplet_loss")
    loss = (_distance(anchor, positive, eps) - _distance(anchor, negative, eps) + margin).clamp(min=0)
    return reduce_loss(loss, reduction)


def batch_hard_triplet_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 1.0,
    reduction: str = "mean",
    eps: float = 1e-9,
) -> torch.Tensor:
    """Triplet loss with batch-hard mining (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss").

    Every sample is an anchor; its triplet uses the farthest sample of its label (hardest positive) and
    the nearest sample of another label (hardest negative) within the batch. Anchors without any positive
    or negative in the batch are left out (``"none"`` gives them 0).

    Args:
        embeddings: ``[N, D]``.
        labels: ``[N]`` int64 identities.
        margin: as in :func:`triplet_loss`.
        reduction: ``"none"`` (``[N]``) | ``"mean"`` (over valid anchors) | ``"sum"``.
        eps: added under the square root.
    """
    check_reduction(reduction, "batch_hard_triplet_loss")
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ShapeError(
            "batch_hard_triplet_loss: expected embeddings [N, D] and labels [N], "
            f"got {list(embeddings.shape)} and {list(labels.shape)}"
        )
    num = embeddings.shape[0]
    distances = _distance(embeddings[:, None], embeddings[None], eps)  # [N, N]
    same = labels[:, None] == labels[None]
    not_self = ~torch.eye(num, dtype=torch.bool, device=embeddings.device)
    positive_mask = same & not_self
    negative_mask = ~same
    hardest_positive = torch.where(positive_mask, distances, distances.new_tensor(-1.0)).amax(dim=1)
    hardest_negative = torch.where(negative_mask, distances, distances.new_tensor(float("inf"))).amin(dim=1)
    valid = positive_mask.any(dim=1) & negative_mask.any(dim=1)
    loss = torch.where(
        valid, (hardest_positive - hardest_negative + margin).clamp(min=0), distances.new_zeros(())
    )
    if reduction == "mean":
        return loss.sum() / valid.sum().clamp(min=1)
    return reduce_loss(loss, reduction)


def supervised_contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 0.1,
    reduction: str = "mean",
) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020, "SupCon", eq. 2, the "out" form).

    With unit-length embeddings ``z`` and ``s_ij = z_i . z_j / temperature``, anchor ``i`` costs
    ``-1/|P(i)| sum_{p in P(i)} log(exp(s_ip) / sum_{a != i} exp(s_ia))``: a softmax over every other
    sample of the batch in which all samples of the anchor's label are the right answers. Unlike
    the batch-hard triplet it weighs every positive and negative by how close it is, so it does not
    collapse early in training (FaceNet, section 3.2, on hardest negatives). Passing two augmented
    views of each image with the same label adds the view pairs as positives.

    Args:
        embeddings: ``[N, D]``; normalised here (the loss is defined on the unit sphere).
        labels: ``[N]`` int64 identities.
        temperature: softmax temperature; smaller is sharper.
        reduction: ``"none"`` (``[N]``, 0 for anchors without a positive) | ``"mean"`` (over anchors
            with a positive) | ``"sum"``.
    """
    check_reduction(reduction, "supervised_contrastive_loss")
    if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
        raise ShapeError(
            "supervised_contrastive_loss: expected embeddings [N, D] and labels [N], "
            f"got {list(embeddings.shape)} and {list(labels.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"supervised_contrastive_loss: temperature must be > 0, got {temperature}")
    # At least float32: exp(s / 0.1) of half-precision similarities loses the small differences.
    z = torch.nn.functional.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=-1)
    num = z.shape[0]
    self_mask = torch.eye(num, dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - logits.logsumexp(dim=1, keepdim=True)
    positive = (labels[:, None] == labels[None]) & ~self_mask
    count = positive.sum(dim=1)
    # where() rather than a product: log_prob is -inf on the diagonal and 0 * -inf would be NaN.
    loss = -torch.where(positive, log_prob, log_prob.new_zeros(())).sum(dim=1) / count.clamp(min=1)
    valid = count > 0
    if reduction == "mean":
        return loss.sum() / valid.sum().clamp(min=1)
    return reduce_loss(loss, reduction)
