"""DETR's set criterion (Carion et al. 2020, sec. 3.1, eq. 1-2 and appendix A.2).

The N predictions of an image are matched one-to-one to its ground-truth objects by the Hungarian
algorithm over the cost ``-p(c) + 5 L1 - 2 GIoU`` (``cvzoo.ops.HungarianMatcher``); queries left unmatched
are "no object" (the class after the last real one). The loss is then a plain sum over pairs:

- ``loss_ce``: cross entropy of every query's class, the no-object class down-weighted to 0.1 "to account
  for class imbalance", averaged with those weights (``F.cross_entropy``'s weighted mean);
- ``loss_bbox``: L1 between matched boxes in normalised ``cxcywh``;
- ``loss_giou``: ``1 - GIoU`` of matched boxes;

the two box terms divided by the number of objects in the batch (at least 1). The total weighs them
1 / 5 / 2, and with auxiliary decoding losses adds the same terms, each layer matched on its own, for every
decoder layer but the last.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.models.detection.base import TargetError
from cvzoo.ops import HungarianMatcher, box_convert, generalized_box_iou_elementwise

Target = dict[str, torch.Tensor]



def check_objects_fit_queries(targets: Sequence[Target], queries: int, family: str) -> None:
    """A set-prediction detector matches each object to its own query: more objects than queries in an image
    cannot be matched, so it is a ``TargetError`` naming the image and both numbers."""
    for index, target in enumerate(targets):
        if len(target["labels"]) > queries:
            raise TargetError(f"image {index} of the batch has {len(target['labels'])} objects but the model "
                              f"predicts {queries} (num_queries): {family} matches each object to its own query")

class SetCriterion(nn.Module):
    """Hungarian matching + DETR's losses.

    Args:
        num_classes: real classes ``K``; logits have ``K + 1`` columns, the last meaning no object.
        class_weight, bbox_weight, giou_weight: loss weights (1, 5, 2), also the matching costs.
        no_object_weight: the no-object class's weight in the cross entropy (0.1).
    """

    def __init__(self, num_classes: int, class_weight: float = 1.0, bbox_weight: float = 5.0,
                 giou_weight: float = 2.0, no_object_weight: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weights = {"loss_ce": class_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        self.matcher = HungarianMatcher(class_weight, bbox_weight, giou_weight, box_format="cxcywh")
        class_weights = torch.ones(num_classes + 1)
        class_weights[-1] = no_object_weight
        self.register_buffer("class_weights", class_weights, persistent=False)

    def forward(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Losses of one batch.

        Args:
            logits: ``[L, B, N, K + 1]`` class logits of each decoder layer (the last one last; ``L = 1``
                without auxiliary losses).
            boxes: ``[L, B, N, 4]`` normalised ``cxcywh`` boxes.
            targets: per image ``{"labels": int64 [T], "boxes": [T, 4]}`` normalised ``cxcywh``.

        Returns:
            ``{"loss": weighted total, "loss_ce", "loss_bbox", "loss_giou"}`` (the last layer's unweighted
            terms, detached) and ``"loss_aux"`` (the weighted sum over the other layers, detached) when L > 1.

        Raises:
            TargetError: an image has more objects than the model has queries (naming the image and both).
        """
        check_objects_fit_queries(targets, logits.shape[2], "DETR")
        # The box terms are averaged over the batch's objects (DETR also averages this count over processes).
        num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
        per_layer = [self.layer_losses(layer_logits, layer_boxes, targets, num_boxes)
                     for layer_logits, layer_boxes in zip(logits, boxes)]
        totals = [sum(self.weights[k] * v for k, v in parts.items()) for parts in per_layer]
        last = per_layer[-1]
        out = {"loss": sum(totals), **{k: v.detach() for k, v in last.items()}}
        if len(per_layer) > 1:
            out["loss_aux"] = sum(totals[:-1]).detach()
        return out

    def layer_losses(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target],
                     num_boxes: int) -> dict[str, torch.Tensor]:
        """The three unweighted terms of one decoder layer: ``logits [B, N, K + 1]``, ``boxes [B, N, 4]``."""
        matches = self.matcher(logits.detach(), boxes.detach(), targets)
        batch_index = torch.cat([torch.full_like(queries, i) for i, (queries, _) in enumerate(matches)]).to(logits.device)
        query_index = torch.cat([queries for queries, _ in matches]).to(logits.device)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[batch_index, query_index] = torch.cat(
            [t["labels"][objects.to(t["labels"].device)] for t, (_, objects) in zip(targets, matches)]).to(logits.device)
        loss_ce = F.cross_entropy(logits.transpose(1, 2), classes, self.class_weights.to(logits.dtype))
        matched = boxes[batch_index, query_index]
        target_boxes = torch.cat([t["boxes"][objects.to(t["boxes"].device)] for t, (_, objects) in zip(targets, matches)])
        target_boxes = target_boxes.to(matched)
        loss_bbox = F.l1_loss(matched, target_boxes, reduction="sum") / num_boxes
        giou = generalized_box_iou_elementwise(box_convert(matched, "cxcywh", "xyxy"),
                                               box_convert(target_boxes, "cxcywh", "xyxy"), eps=0.0)
        loss_giou = (1 - giou).sum() / num_boxes
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou}
