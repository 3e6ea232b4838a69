"""CornerNet's training loss (Law & Deng 2018, Sec. 3.2-3.3, eq. 1-6).

``L = L_det + 0.1 L_pull + 0.1 L_push + L_off``:

- ``L_det``: the variant focal loss (alpha 2, beta 4) on Gaussian-penalised heatmaps, both corner types,
  divided by the number of objects ``N`` in the batch (eq. 1);
- ``L_pull = 1/N sum_k (e_tk - e_k)^2 + (e_bk - e_k)^2`` pulls an object's two corner embeddings to their
  mean ``e_k``; ``L_push = 1/(N(N-1)) sum_k sum_{j != k} max(0, Delta - |e_k - e_j|)`` pushes the means of
  different objects at least ``Delta = 1`` apart (eq. 4-5); both per image, averaged over the images
  that have enough objects (the paper defines them per image; the released code sums them over the
  batch instead, which only rescales them);
- ``L_off``: smooth L1 between predicted and true sub-pixel offsets at the corner pixels, / N (eq. 3).

With stacked hourglasses every stack's predictions get the loss (intermediate supervision) and the parts
are averaged over the stacks, as CornerNet's code does (the loss of a single stack in validation, which
sees the last stack only, stays on the same scale).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cvzoo.losses import gaussian_focal_loss, smooth_l1_loss
from cvzoo.models.detection.cornernet.targets import CornerTargets


def gather_at(maps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of ``maps [B, D, H, W]`` at flat positions ``index [B, M]`` -> ``[B, M, D]``."""
    flat = maps.flatten(2)  # [B, D, HW]
    return flat.gather(2, index[:, None, :].expand(-1, flat.shape[1], -1)).transpose(1, 2)


def pull_push_loss(tl_embedding: torch.Tensor, br_embedding: torch.Tensor, mask: torch.Tensor,
                   margin: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Associative-embedding losses (eq. 4-5) of corner embeddings ``[B, M, D]`` for objects ``mask [B, M]``.

    Distances between embeddings are Euclidean (``|.|`` for the paper's ``D = 1``). Returns ``(pull,
    push)``, each the mean over the images with at least one (pull) / two (push) objects, 0 when none.
    """
    mean = (tl_embedding + br_embedding) / 2
    weights = mask.to(mean.dtype)
    count = weights.sum(dim=1)  # [B]
    squared = ((tl_embedding - mean) ** 2).sum(-1) + ((br_embedding - mean) ** 2).sum(-1)  # [B, M]
    per_image_pull = (squared * weights).sum(dim=1) / count.clamp(min=1)
    has_one = count >= 1
    pull = per_image_pull[has_one].mean() if has_one.any() else mean.sum() * 0
    # Push over ordered pairs j != k of real objects.
    distance = (mean[:, :, None, :] - mean[:, None, :, :]).pow(2).sum(-1).clamp(min=1e-12).sqrt()  # [B, M, M]
    pairs = weights[:, :, None] * weights[:, None, :]
    pairs = pairs * (1 - torch.eye(mask.shape[1], device=mask.device, dtype=pairs.dtype))
    hinge = (margin - distance).clamp(min=0) * pairs
    pair_count = count * (count - 1)
    has_two = count >= 2
    per_image_push = hinge.sum(dim=(1, 2)) / pair_count.clamp(min=1)
    push = per_image_push[has_two].mean() if has_two.any() else mean.sum() * 0
    return pull, push


class CornerNetLoss:
    """The CornerNet criterion over one or more stacks.

    Args:
        pull_weight, push_weight, offset_weight: 0.1, 0.1, 1 in the paper.
        alpha, beta: focal-loss exponents (2, 4).
        margin: ``Delta`` of the push loss (1).
    """

    def __init__(self, pull_weight: float = 0.1, push_weight: float = 0.1, offset_weight: float = 1.0,
                 alpha: float = 2.0, beta: float = 4.0, margin: float = 1.0) -> None:
        self.pull_weight, self.push_weight, self.offset_weight = pull_weight, push_weight, offset_weight
        self.alpha, self.beta, self.margin = alpha, beta, margin

    def stack_loss(self, outputs: dict[str, torch.Tensor], targets: CornerTargets) -> dict[str, torch.Tensor]:
        """Unweighted parts of one stack's outputs (``tl_heatmap`` ... ``br_offset`` maps)."""
        num = max(targets.num_objects, 1)
        heatmap = (gaussian_focal_loss(outputs["tl_heatmap"], targets.tl_heatmap, self.alpha, self.beta)
                   + gaussian_focal_loss(outputs["br_heatmap"], targets.br_heatmap, self.alpha, self.beta)) / num
        pull, push = pull_push_loss(gather_at(outputs["tl_embedding"], targets.tl_index),
                                    gather_at(outputs["br_embedding"], targets.br_index), targets.mask, self.margin)
        mask = targets.mask[..., None].expand(-1, -1, 2)
        offset = (smooth_l1_loss(gather_at(outputs["tl_offset"], targets.tl_index)[mask], targets.tl_offset[mask],
                                 reduction="sum")
                  + smooth_l1_loss(gather_at(outputs["br_offset"], targets.br_index)[mask], targets.br_offset[mask],
                                   reduction="sum")) / num
        return {"heatmap": heatmap, "pull": pull, "push": push, "offset": offset}

    def __call__(self, stacks: Sequence[dict[str, torch.Tensor]], targets: CornerTargets) -> dict[str, torch.Tensor]:
        """``{"loss", "heatmap", "pull", "push", "offset"}``: parts averaged over the stacks, the total
        weighted; the parts are detached."""
        parts = [self.stack_loss(outputs, targets) for outputs in stacks]
        mean = {name: torch.stack([p[name] for p in parts]).mean() for name in parts[0]}
        total = (mean["heatmap"] + self.pull_weight * mean["pull"] + self.push_weight * mean["push"]
                 + self.offset_weight * mean["offset"])
        return {"loss": total, **{name: value.detach() for name, value in mean.items()}}
