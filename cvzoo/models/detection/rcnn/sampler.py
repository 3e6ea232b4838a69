"""The balanced minibatch of R-CNN training: a fixed number of anchors / proposals per image, at most a
given fraction of them positive (Ren et al. 2015, sec. 3.1.3; Girshick 2015, sec. 2.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class BalancedSampler:
    """Draw up to ``batch_size_per_image * positive_fraction`` positives at random, fill the rest of the
    ``batch_size_per_image`` with random negatives.

    Labels follow the R-CNN convention: ``>= 1`` positive (a class, or 1 for the RPN's objectness), ``0``
    negative (background), ``-1`` ignored. The draws are ``torch.randperm`` of the positives then of the
    negatives of each image in turn (torchvision's order: the same seed samples the same anchors).

    Args:
        batch_size_per_image: anchors (256 in the RPN) or proposals (512 in the box head) per image.
        positive_fraction: the most positives can take (0.5 RPN, 0.25 box head).
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, labels: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image ``[N_i]`` labels -> ``(positive, negative)`` bool masks ``[N_i]`` of the sampled ones."""
        sampled = []
        for image_labels in labels:
            positive = torch.where(image_labels >= 1)[0]
            negative = torch.where(image_labels == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            chosen_pos = positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]
            chosen_neg = negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]
            pos_mask = torch.zeros_like(image_labels, dtype=torch.bool)
            neg_mask = torch.zeros_like(image_labels, dtype=torch.bool)
            pos_mask[chosen_pos] = True
            neg_mask[chosen_neg] = True
            sampled.append((pos_mask, neg_mask))
        return sampled

    def __repr__(self) -> str:
        return f"BalancedSampler(batch_size_per_image={self.batch_size_per_image}, " \
               f"positive_fraction={self.positive_fraction})"
