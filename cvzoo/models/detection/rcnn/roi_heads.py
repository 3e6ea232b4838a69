"""The box branch of Faster R-CNN (Ren et al. 2015; Girshick 2015, "Fast R-CNN"): pool each proposal, run a
small head, classify it over ``K + 1`` classes (0 = background) and refine its box per class.

Training adds the ground-truth boxes to the proposals, labels each proposal with the class of the ground
truth it overlaps with IoU >= 0.5 (background below), samples 512 per image (a quarter positive at
most) and computes cross-entropy plus smooth L1 (beta 1/9) of the positives' deltas for their class,
summed and divided by the number of sampled proposals. Inference takes the softmax, decodes one box per
class, clips, drops scores <= 0.05 and tiny boxes, runs NMS per class (IoU 0.5) and keeps the best 100.

Class indices here are the head's: 0 is background, object class ``c`` (0-based, the dataset's) is ``c + 1``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.detection.one_pass import DetectSettings
from cvzoo.models.detection.rcnn.poolers import MultiScaleRoIAlign
from cvzoo.models.detection.rcnn.sampler import BalancedSampler
from cvzoo.ops import (
    DeltaBoxCoder,
    IoUMatcher,
    batched_nms,
    box_iou,
    clip_boxes,
    remove_small_boxes,
    soft_nms,
)


class TwoMLPHead(nn.Module):
    """FPN's box head (Lin et al. 2017, sec. 4.2): flatten the ``[C, 7, 7]`` pooled map, two 1024-d fc + ReLU."""

    def __init__(self, in_features: int, hidden: int = 1024) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, hidden)
        self.fc7 = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, S, S]`` -> ``[N, hidden]``."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))


class ConvFCHead(nn.Module):
    """The v2 box head (Li et al. 2021, after Wu & He's 4conv1fc): ``num_convs`` 3x3 conv + norm + ReLU,
    then one fc + ReLU.

    Args:
        in_channels: pooled channels ``C``.
        pooled_size: ``S`` of the ``[C, S, S]`` input.
        conv_channels: width of the convs (256).
        num_convs: 4.
        hidden: fc width (1024).
        norm_layer: norm after each conv (``nn.BatchNorm2d``), or None for biased convs.
    """

    def __init__(self, in_channels: int, pooled_size: int, conv_channels: int = 256, num_convs: int = 4,
                 hidden: int = 1024, norm_layer: type[nn.Module] | None = nn.BatchNorm2d) -> None:
        super().__init__()
        widths = [in_channels] + [conv_channels] * num_convs
        self.convs = nn.Sequential(*(ConvNormAct(a, b, 3, norm_layer=norm_layer) for a, b in zip(widths, widths[1:])))
        self.fc = nn.Linear(widths[-1] * pooled_size * pooled_size, hidden)
        for module in self.convs.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, C, S, S]`` -> ``[N, hidden]``."""
        return F.relu(self.fc(self.convs(x).flatten(1)))


class BoxPredictor(nn.Module):
    """Class logits over ``K + 1`` classes (0 = background) and ``4 (K + 1)`` box deltas per proposal."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * (num_classes + 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N, D]`` -> logits ``[N, K + 1]``, deltas ``[N, 4 (K + 1)]``."""
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


def fast_rcnn_loss(class_logits: torch.Tensor, box_deltas: torch.Tensor, labels: torch.Tensor,
                   regression_targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over the sampled proposals and smooth L1 of the positives' deltas for their class
    (beta 1/9, summed, divided by the number of sampled proposals).

    Args:
        class_logits: ``[N, K + 1]``.
        box_deltas: ``[N, 4 (K + 1)]``.
        labels: ``[N]`` int64 head classes (0 background).
        regression_targets: ``[N, 4]`` deltas to each proposal's matched ground truth.
    """
    classification = F.cross_entropy(class_logits, labels)
    positive = torch.where(labels > 0)[0]
    per_class = box_deltas.reshape(len(box_deltas), box_deltas.shape[1] // 4, 4)
    box_loss = F.smooth_l1_loss(per_class[positive, labels[positive]], regression_targets[positive], beta=1 / 9,
                                reduction="sum") / labels.numel()
    return classification, box_loss


@dataclass
class SampledProposals:
    """The training minibatch of the box head, per image: ``boxes [n_i, 4]``, head ``labels [n_i]`` (0 =
    background), the index of each one's ground truth ``matched [n_i]`` and the ``regression`` targets."""

    boxes: list[torch.Tensor]
    labels: list[torch.Tensor]
    matched: list[torch.Tensor]
    regression: list[torch.Tensor]

    def positives(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image the positive proposals' boxes and their ground truths' indices (the mask branch's input)."""
        keep = [torch.where(labels > 0)[0] for labels in self.labels]
        return [b[k] for b, k in zip(self.boxes, keep)], [m[k] for m, k in zip(self.matched, keep)]


class RoIHeads(nn.Module):
    """Pooler + head + predictor, with Fast R-CNN's proposal sampling, loss and inference.

    Args:
        box_pool: pools ``[C, S, S]`` per box.
        box_head: ``[N, C, S, S]`` -> ``[N, D]``.
        box_predictor: ``[N, D]`` -> logits, deltas.
        fg_iou_thresh, bg_iou_thresh: proposal labelling thresholds (0.5, 0.5).
        batch_size_per_image, positive_fraction: the sampled minibatch (512, 0.25).
        box_weights: the delta weights (10, 10, 5, 5).
    """

    def __init__(self, box_pool: MultiScaleRoIAlign, box_head: nn.Module, box_predictor: BoxPredictor,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, box_weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0)) -> None:
        super().__init__()
        self.box_pool, self.box_head, self.box_predictor = box_pool, box_head, box_predictor
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.box_coder = DeltaBoxCoder(box_weights)

    def sample(self, proposals: Sequence[torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]) -> SampledProposals:
        """Append the ground truths to the proposals, label them and draw the balanced minibatch.

        ``targets`` hold ``boxes`` (resized-image pixels) and head ``labels`` (1..K).
        """
        boxes, labels, matched, regression = [], [], [], []
        for image_proposals, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(image_proposals.dtype)
            candidates = torch.cat((image_proposals, gt_boxes))
            if gt_boxes.numel() == 0:
                index = torch.zeros(len(candidates), dtype=torch.int64, device=candidates.device)
                image_labels = torch.zeros_like(index)
                gt_boxes = candidates.new_zeros((1, 4))
            else:
                matches = self.matcher(box_iou(gt_boxes, candidates))
                index = matches.clamp(min=0)
                image_labels = target["labels"][index].to(torch.int64)
                image_labels[matches == IoUMatcher.NEGATIVE] = 0
                image_labels[matches == IoUMatcher.IGNORE] = -1
            boxes.append(candidates)
            labels.append(image_labels)
            matched.append(index)
        for i, (pos, neg) in enumerate(self.sampler(labels)):
            chosen = torch.where(pos | neg)[0]
            boxes[i], labels[i], matched[i] = boxes[i][chosen], labels[i][chosen], matched[i][chosen]
            gt_boxes = targets[i]["boxes"].to(boxes[i].dtype)
            if gt_boxes.numel() == 0:
                gt_boxes = boxes[i].new_zeros((1, 4))
            regression.append(self.box_coder.encode(gt_boxes[matched[i]], boxes[i]))
        return SampledProposals(boxes, labels, matched, regression)

    def classify(self, features: Sequence[torch.Tensor], boxes: Sequence[torch.Tensor],
                 image_sizes: Sequence[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``[sum N_i, K + 1]`` and deltas ``[sum N_i, 4 (K + 1)]`` of per-image boxes."""
        return self.box_predictor(self.box_head(self.box_pool(features, boxes, image_sizes)))

    def loss(self, features: Sequence[torch.Tensor], sampled: SampledProposals,
             image_sizes: Sequence[tuple[int, int]]) -> dict[str, torch.Tensor]:
        class_logits, box_deltas = self.classify(features, sampled.boxes, image_sizes)
        classification, box = fast_rcnn_loss(class_logits, box_deltas, torch.cat(sampled.labels),
                                             torch.cat(sampled.regression))
        return {"loss_classifier": classification, "loss_box_reg": box}

    def detect(self, features: Sequence[torch.Tensor], proposals: Sequence[torch.Tensor],
               image_sizes: Sequence[tuple[int, int]], settings: DetectSettings) -> list[dict[str, torch.Tensor]]:
        """Per image ``{"boxes": [D, 4] xyxy (resized-image pixels), "scores": [D], "labels": [D]}`` with head
        labels (1..K), by decreasing score."""
        class_logits, box_deltas = self.classify(features, proposals, image_sizes)
        # Classes from the layer, not -1: a batch whose RPN kept no proposal has 0 rows (torchvision guards it too).
        per_class = box_deltas.reshape(box_deltas.shape[0], box_deltas.shape[1] // 4, 4)
        boxes = self.box_coder.decode(per_class, torch.cat(list(proposals))[:, None])
        scores = F.softmax(class_logits, -1)
        if len(proposals) == 1:  # no split: traced for ONNX export, its count would become a constant
            return [select_detections(boxes, scores, image_sizes[0], settings)]
        counts = [len(p) for p in proposals]
        return [select_detections(b, s, size, settings)
                for b, s, size in zip(boxes.split(counts), scores.split(counts), image_sizes)]


def select_detections(boxes: torch.Tensor, scores: torch.Tensor, image_size: tuple[int, int],
                      settings: DetectSettings) -> dict[str, torch.Tensor]:
    """One image's per-class boxes ``[N, K + 1, 4]`` and softmax ``[N, K + 1]`` -> its detections: every
    (proposal, object class) pair scoring above the threshold, clipped, tiny boxes dropped, NMS per class."""
    num_classes = scores.shape[1]
    boxes = clip_boxes(boxes, image_size)[:, 1:].reshape(-1, 4)
    labels = torch.arange(num_classes, device=scores.device).expand_as(scores)[:, 1:].reshape(-1)
    scores = scores[:, 1:].reshape(-1)
    keep = torch.where(scores > settings.score_thresh)[0]
    if settings.classes is not None:
        wanted = torch.as_tensor([c + 1 for c in settings.classes], device=labels.device)
        keep = keep[torch.isin(labels[keep], wanted)]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = remove_small_boxes(boxes, 1e-2)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    groups = torch.zeros_like(labels) if settings.agnostic else labels
    if settings.soft_nms:
        keep, scores_kept = soft_nms(boxes, scores, iou_threshold=settings.nms_thresh, method=settings.soft_nms,
                                     idxs=groups)
        order = scores_kept.argsort(descending=True)[: settings.detections_per_img]
        keep, scores = keep[order], scores_kept[order]
    else:
        keep = batched_nms(boxes, scores, groups, settings.nms_thresh)[: settings.detections_per_img]
        scores = scores[keep]
    return {"boxes": boxes[keep], "scores": scores, "labels": labels[keep]}
