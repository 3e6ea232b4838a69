"""Contrastive denoising queries for training (Zhang et al. 2023, "DINO", sec. 3.3; used by RT-DETR).

Besides its ``N`` matching queries, the decoder gets noised copies of the ground truth whose answer is known
without matching, which steadies the early training of a set-prediction detector (Li et al. 2022,
"DN-DETR"). Per group, every object appears twice:

- a positive: its label flipped to a random class with probability ``label_noise_ratio / 2`` and its
  corners moved by less than ``box_noise_scale`` times half its size (uniform in ``[0, 1)``) -> it must
  reconstruct the object;
- a negative: the same label noise, the corners moved by between 1 and 2 times that -> "no object".

``G = max(1, num_denoising // M)`` groups (``M`` the most objects of an image in the batch) make
``D = 2 M G`` denoising queries, padded with the "no object" embedding where an image has fewer objects.
The attention mask keeps the answer from leaking: matching queries do not see denoising ones, and each
group sees only itself (and the matching queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cvzoo.models.detection.rtdetr.decoder import inverse_sigmoid
from cvzoo.ops import box_convert

Target = dict[str, torch.Tensor]


@dataclass
class DenoisingGroups:
    """The denoising part of one training batch.

    Attributes:
        queries: ``[B, D, C]`` content queries (embedded noisy labels).
        reference_logits: ``[B, D, 4]`` noisy boxes, ``logit(cxcywh)``.
        attn_mask: ``[D + N, D + N]`` bool, True where a query may attend to a key.
        positives: per image, the ``[G T_b]`` indices of its positive queries (group by group).
        num_groups: ``G``.
        num_queries: ``D``.
    """

    queries: torch.Tensor
    reference_logits: torch.Tensor
    attn_mask: torch.Tensor
    positives: list[torch.Tensor]
    num_groups: int
    num_queries: int

    def matches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, ``(query indices, object indices)``: positive ``g`` of object ``j`` answers object ``j``."""
        out = []
        for positives in self.positives:
            objects = len(positives) // self.num_groups
            out.append((positives, torch.arange(objects, device=positives.device).repeat(self.num_groups)))
        return out


def denoising_groups(targets: Sequence[Target], label_embed: nn.Embedding, num_classes: int, num_queries: int,
                     num_denoising: int, label_noise_ratio: float = 0.5, box_noise_scale: float = 1.0
                     ) -> DenoisingGroups | None:
    """Build the denoising queries of a batch (None when it has no object or ``num_denoising`` is 0).

    Args:
        targets: per image ``{"labels": [T], "boxes": [T, 4]}`` normalised ``cxcywh``.
        label_embed: ``K + 1`` embeddings, the last one "no object" (padding).
        num_classes: ``K``.
        num_queries: the matching queries ``N`` (for the mask).
        num_denoising: the denoising budget (100).
        label_noise_ratio, box_noise_scale: the noise (0.5, 1.0).
    """
    counts = [len(t["labels"]) for t in targets]
    most = max(counts, default=0)
    if num_denoising <= 0 or most == 0:
        return None
    device = label_embed.weight.device
    groups = max(num_denoising // most, 1)
    batch = len(targets)
    labels = torch.full((batch, most), num_classes, dtype=torch.int64, device=device)
    boxes = torch.zeros(batch, most, 4, device=device)
    present = torch.zeros(batch, most, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        labels[i, :counts[i]] = target["labels"].to(device)
        boxes[i, :counts[i]] = target["boxes"].to(device)
        present[i, :counts[i]] = True
    # Each group is [positives of the M slots, negatives of the M slots].
    labels, boxes, present = labels.repeat(1, 2 * groups), boxes.repeat(1, 2 * groups, 1), present.repeat(1, 2 * groups)
    negative = torch.zeros(2 * most, dtype=torch.bool, device=device)
    negative[most:] = True
    negative = negative.repeat(groups)[None].expand(batch, -1)
    if label_noise_ratio > 0:
        flip = (torch.rand(labels.shape, device=device) < label_noise_ratio * 0.5) & present
        labels = torch.where(flip, torch.randint_like(labels, 0, num_classes), labels)
    if box_noise_scale > 0:
        corners = box_convert(boxes, "cxcywh", "xyxy")
        half = boxes[..., 2:].repeat(1, 1, 2) * 0.5 * box_noise_scale
        sign = torch.randint(0, 2, boxes.shape, device=device).to(boxes.dtype) * 2 - 1
        amount = torch.rand(boxes.shape, device=device) + negative[..., None].to(boxes.dtype)
        boxes = box_convert((corners + sign * amount * half).clamp(0, 1), "xyxy", "cxcywh")
    total = 2 * most * groups
    size = total + num_queries
    mask = torch.ones(size, size, dtype=torch.bool, device=device)
    mask[total:, :total] = False  # matching queries never see the denoising ones
    for g in range(groups):
        start, end = 2 * most * g, 2 * most * (g + 1)
        mask[start:end, :start] = False
        mask[start:end, end:total] = False
    positive_slots = (~negative[0]).nonzero().squeeze(1)  # [M G]: slot s of group g is g 2M + s
    positives = [positive_slots.view(groups, most)[:, :n].flatten() for n in counts]
    return DenoisingGroups(label_embed(labels), inverse_sigmoid(boxes), mask, positives, groups, total)
