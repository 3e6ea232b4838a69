"""RT-DETR's set criterion (Zhao et al. 2024, sec. 4.4; the losses of its code and of transformers').

Each decoder layer's ``N`` predictions are matched one-to-one to the objects (``cvzoo.ops.HungarianMatcher``
with the focal class cost, 2 / 5 / 2 for class / L1 / GIoU), then:

- ``loss_vfl``: the varifocal loss (Zhang et al. 2021) of the sigmoid class scores against the IoU-aware
  target: a matched query's class should score the IoU of its box with its object (sec. 4.4, "IoU-aware
  query selection": this is what makes a high class score mean a well-placed box), every other score 0,
  the negatives focally down-weighted (``alpha = 0.75``, ``gamma = 2``);
- ``loss_bbox``: L1 of matched boxes (normalised ``cxcywh``), ``loss_giou``: ``1 - GIoU``;

each summed and divided by the number of objects in the batch (at least 1), weighted 1 / 5 / 2. With the
auxiliary losses the same terms are added for every earlier decoder layer and for the encoder's selected
proposals (each matched on its own), and in training for every layer's denoising queries, matched by
construction (``denoising.py``) with the object count multiplied by the number of groups.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvzoo.losses import varifocal_loss
from cvzoo.models.detection.detr.criterion import check_objects_fit_queries
from cvzoo.models.detection.rtdetr.denoising import DenoisingGroups
from cvzoo.ops import HungarianMatcher, box_convert, box_iou_elementwise, generalized_box_iou_elementwise

Target = dict[str, torch.Tensor]
Matches = list[tuple[torch.Tensor, torch.Tensor]]


class RTDETRCriterion(nn.Module):
    """Hungarian matching + RT-DETR's losses.

    Args:
        num_classes: ``K`` (sigmoid scores, no "no object" column).
        vfl_weight, bbox_weight, giou_weight: loss weights (1, 5, 2).
        class_cost, bbox_cost, giou_cost: matching costs (2, 5, 2).
        alpha, gamma: of the varifocal loss (0.75, 2).
        matcher_alpha, matcher_gamma: of the focal class cost (0.25, 2).
    """

    def __init__(self, num_classes: int, vfl_weight: float = 1.0, bbox_weight: float = 5.0, giou_weight: float = 2.0,
                 class_cost: float = 2.0, bbox_cost: float = 5.0, giou_cost: float = 2.0, alpha: float = 0.75,
                 gamma: float = 2.0, matcher_alpha: float = 0.25, matcher_gamma: float = 2.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.weights = {"loss_vfl": vfl_weight, "loss_bbox": bbox_weight, "loss_giou": giou_weight}
        self.alpha, self.gamma = alpha, gamma
        self.matcher = HungarianMatcher(class_cost, bbox_cost, giou_cost, box_format="cxcywh", class_cost="focal",
                                        focal_alpha=matcher_alpha, focal_gamma=matcher_gamma)

    def forward(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target],
                encoder: tuple[torch.Tensor, torch.Tensor] | None = None,
                denoising: tuple[torch.Tensor, torch.Tensor, DenoisingGroups] | None = None
                ) -> dict[str, torch.Tensor]:
        """Losses of one batch.

        Args:
            logits: ``[L, B, N, K]`` class logits of the decoder layers used (the last one last; ``L = 1``
                without auxiliary losses).
            boxes: ``[L, B, N, 4]`` normalised ``cxcywh``.
            targets: per image ``{"labels": int64 [T], "boxes": [T, 4]}`` normalised ``cxcywh``.
            encoder: the selected proposals' ``(logits [B, N, K], boxes [B, N, 4])`` (auxiliary).
            denoising: every layer's denoising ``(logits [L, B, D, K], boxes [L, B, D, 4])`` and their groups.

        Returns:
            ``{"loss": weighted total, "loss_vfl", "loss_bbox", "loss_giou"}`` (the last layer's unweighted
            terms, detached), ``"loss_aux"`` (the weighted sum over the earlier layers and the encoder) and
            ``"loss_dn"`` (over the denoising queries) when present, detached.

        Raises:
            TargetError: an image has more objects than the model has queries (naming the image and both).
        """
        check_objects_fit_queries(targets, logits.shape[2], "RT-DETR")
        num_boxes = max(sum(len(t["labels"]) for t in targets), 1)
        per_layer = [self.terms(layer_logits, layer_boxes, targets, None, num_boxes)
                     for layer_logits, layer_boxes in zip(logits, boxes)]
        totals = [self.weighted(parts) for parts in per_layer]
        out = {k: v.detach() for k, v in per_layer[-1].items()}
        aux = totals[:-1]
        if encoder is not None:
            aux.append(self.weighted(self.terms(*encoder, targets, None, num_boxes)))
        total = totals[-1] + sum(aux)
        if aux:
            out["loss_aux"] = sum(aux).detach()
        if denoising is not None:
            dn_logits, dn_boxes, groups = denoising
            matches = groups.matches()
            dn = sum(self.weighted(self.terms(layer_logits, layer_boxes, targets, matches, num_boxes * groups.num_groups))
                     for layer_logits, layer_boxes in zip(dn_logits, dn_boxes))
            total = total + dn
            out["loss_dn"] = dn.detach()
        return {"loss": total, **out}

    def weighted(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[k] * v for k, v in parts.items())

    def terms(self, logits: torch.Tensor, boxes: torch.Tensor, targets: Sequence[Target], matches: Matches | None,
              num_boxes: float) -> dict[str, torch.Tensor]:
        """The three unweighted terms of one set of predictions (``logits [B, N, K]``, ``boxes [B, N, 4]``),
        matched by the Hungarian matcher unless ``matches`` are given."""
        if matches is None:
            matches = self.matcher(logits.detach(), boxes.detach(), targets)
        device = logits.device
        batch_index = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(device)
        query_index = torch.cat([q for q, _ in matches]).to(device)
        labels = torch.cat([t["labels"][o.to(t["labels"].device)] for t, (_, o) in zip(targets, matches)]).to(device)
        target_boxes = torch.cat([t["boxes"][o.to(t["boxes"].device)] for t, (_, o) in zip(targets, matches)])
        target_boxes = target_boxes.to(boxes)
        matched = boxes[batch_index, query_index]
        matched_xyxy, target_xyxy = box_convert(matched, "cxcywh", "xyxy"), box_convert(target_boxes, "cxcywh", "xyxy")
        # The IoU-aware target: the matched class scores its box's IoU (no gradient through the IoU).
        iou = box_iou_elementwise(matched_xyxy.detach(), target_xyxy, eps=0.0)
        quality = torch.zeros_like(logits)
        positive = torch.zeros_like(logits, dtype=torch.bool)
        quality[batch_index, query_index, labels] = iou.to(logits.dtype)
        positive[batch_index, query_index, labels] = True
        loss_vfl = varifocal_loss(logits, quality, self.alpha, self.gamma, positive=positive).sum() / num_boxes
        loss_bbox = (matched - target_boxes).abs().sum() / num_boxes
        giou = generalized_box_iou_elementwise(matched_xyxy, target_xyxy, eps=0.0)
        return {"loss_vfl": loss_vfl, "loss_bbox": loss_bbox, "loss_giou": (1 - giou).sum() / num_boxes}
