"""The Region Proposal Network (Ren et al. 2015, "Faster R-CNN", sec. 3.1) on a feature pyramid (Lin et al.
2017, "Feature Pyramid Networks for Object Detection", sec. 4.1).

A small head slides over every pyramid level and predicts, for each of the ``A`` anchors of a cell, an
objectness logit and four box deltas (R-CNN parameterisation, unit weights). Proposals are the decoded
anchors filtered per image: the ``pre_nms_top_n`` best of each level, clipped to the image, tiny boxes
and low scores dropped, NMS within each level, then the ``post_nms_top_n`` best overall. Training labels
anchors by IoU (>= 0.7 positive, < 0.3 negative, and each ground truth's best anchors positive),
samples 256 per image (half positive at most), and scores them with binary cross-entropy (objectness)
and smooth L1 (deltas of the positives), both over the sampled anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.detection.rcnn.sampler import BalancedSampler
from cvzoo.ops import (
    AnchorGenerator,
    DeltaBoxCoder,
    IoUMatcher,
    batched_nms,
    box_iou,
    clip_boxes,
    flatten_anchor_maps,
    remove_small_boxes,
)


class RPNHead(nn.Module):
    """``num_convs`` 3x3 conv + ReLU (shared over levels), then 1x1 convs to ``A`` objectness logits and
    ``4 A`` deltas per cell. One conv is the paper's head; the v2 recipe (Li et al. 2021) uses two.

    Args:
        in_channels: channels of every pyramid level.
        num_anchors: anchors per cell ``A``.
        num_convs: 3x3 convs before the predictions.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_convs: int = 1) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(ConvNormAct(in_channels, in_channels, 3, norm_layer=None)
                                     for _ in range(num_convs)))
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Levels ``[B, C, H_l, W_l]`` -> objectness ``[B, A, H_l, W_l]`` and deltas ``[B, 4A, H_l, W_l]`` per level."""
        objectness, deltas = [], []
        for x in features:
            x = self.convs(x)
            objectness.append(self.objectness(x))
            deltas.append(self.deltas(x))
        return objectness, deltas


@dataclass(frozen=True)
class ProposalCounts:
    """How many proposals survive per image, in training and at test time."""

    train: int
    test: int

    def get(self, training: bool) -> int:
        return self.train if training else self.test


class RegionProposalNetwork(nn.Module):
    """Anchors + :class:`RPNHead` -> proposals per image, and the RPN losses when targets are given.

    Args:
        anchor_generator: anchors of the pyramid levels.
        head: the conv head.
        fg_iou_thresh, bg_iou_thresh: anchor labelling thresholds (0.7, 0.3).
        batch_size_per_image, positive_fraction: the sampled minibatch (256, 0.5).
        pre_nms_top_n: best anchors kept per level before NMS (2000 / 1000 for the FPN models).
        post_nms_top_n: proposals kept per image after NMS (2000 / 1000).
        nms_thresh: IoU of the NMS within each level (0.7).
        score_thresh: proposals with a lower objectness probability are dropped (0 keeps all).
        min_size: proposals thinner than this (pixels) are dropped.
    """

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: ProposalCounts = ProposalCounts(2000, 1000),
        post_nms_top_n: ProposalCounts = ProposalCounts(2000, 1000),
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = DeltaBoxCoder((1.0, 1.0, 1.0, 1.0))
        self.matcher = IoUMatcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.sampler = BalancedSampler(batch_size_per_image, positive_fraction)
        self.pre_nms_top_n, self.post_nms_top_n = pre_nms_top_n, post_nms_top_n
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, min_size

    def forward(
        self,
        features: Sequence[torch.Tensor],
        batch_shape: tuple[int, int],
        image_sizes: Sequence[tuple[int, int]],
        targets: Sequence[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        """Proposals ``[P_i, 4]`` xyxy (resized-image pixels) per image, by decreasing objectness, and with
        ``targets`` (boxes in the same pixels) ``{"loss_objectness", "loss_rpn_box_reg"}``.

        Args:
            features: pyramid levels ``[B, C, H_l, W_l]``, finest first.
            batch_shape: ``(H, W)`` of the padded batch (the anchors' strides come from it).
            image_sizes: each image's ``(height, width)`` inside the padding (proposals are clipped to it);
                0-d tensors while ``torch.onnx.export`` traces the model.
            targets: per image ``{"boxes": [N_i, 4]}``, or None.
        """
        objectness_maps, delta_maps = self.head(features)
        feature_sizes = [tuple(f.shape[-2:]) for f in features]
        anchors = self.anchor_generator(batch_shape, feature_sizes, features[0].device, features[0].dtype)
        objectness = flatten_anchor_maps(objectness_maps, 1)[..., 0]  # [B, N]
        deltas = flatten_anchor_maps(delta_maps, 4)  # [B, N, 4]
        boxes = self.box_coder.decode(deltas.detach(), anchors[None])
        per_level = [m.shape[1] * m.shape[2] * m.shape[3] for m in objectness_maps]
        proposals = self.filter_proposals(boxes, objectness.detach(), per_level, image_sizes)
        losses: dict[str, torch.Tensor] = {}
        if targets is not None:
            losses = self.loss(objectness, deltas, anchors, targets)
        return proposals, losses

    def filter_proposals(self, boxes: torch.Tensor, objectness: torch.Tensor, per_level: Sequence[int | torch.Tensor],
                         image_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Decoded anchors ``[B, N, 4]`` and logits ``[B, N]`` -> at most ``post_nms_top_n`` proposals per image."""
        pre_n, post_n = self.pre_nms_top_n.get(self.training), self.post_nms_top_n.get(self.training)
        top, levels, start = [], [], 0
        for level, count in enumerate(per_level):
            # Traced for ONNX export, ``count`` is a 0-d tensor (the level's size at the exported image's
            # size): min() would freeze the tracing image's choice, clamp keeps it in the graph.
            k = count.clamp(max=pre_n) if isinstance(count, torch.Tensor) else min(pre_n, count)
            index = objectness[:, start:start + count].topk(k, dim=1).indices
            top.append(index + start)
            levels.append(torch.full_like(index[0], level))
            start += count
        index = torch.cat(top, dim=1)  # [B, K]
        level_of = torch.cat(levels)
        rows = torch.arange(boxes.shape[0], device=boxes.device)[:, None]
        boxes, scores = boxes[rows, index], objectness[rows, index].sigmoid()
        proposals = []
        for image_boxes, image_scores, size in zip(boxes, scores, image_sizes):
            image_boxes = clip_boxes(image_boxes, size)
            keep = remove_small_boxes(image_boxes, self.min_size)
            keep = keep[image_scores[keep] >= self.score_thresh]
            image_boxes, image_scores, image_levels = image_boxes[keep], image_scores[keep], level_of[keep]
            keep = batched_nms(image_boxes, image_scores, image_levels, self.nms_thresh)[:post_n]
            proposals.append(image_boxes[keep])
        return proposals

    def label_anchors(self, anchors: torch.Tensor, gt_boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[N]`` float labels (1 object, 0 background, -1 ignored) and the ``[N, 4]`` matched boxes."""
        if gt_boxes.numel() == 0:
            return anchors.new_zeros(len(anchors)), torch.zeros_like(anchors)
        matches = self.matcher(box_iou(gt_boxes, anchors))
        labels = (matches >= 0).to(anchors.dtype)
        labels[matches == IoUMatcher.IGNORE] = -1.0
        return labels, gt_boxes[matches.clamp(min=0)]

    def loss(self, objectness: torch.Tensor, deltas: torch.Tensor, anchors: torch.Tensor,
             targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Objectness BCE and smooth-L1 (beta 1/9, summed, over the sampled count) on one sampled minibatch."""
        labelled = [self.label_anchors(anchors, t["boxes"].to(anchors.dtype)) for t in targets]
        labels = [labels for labels, _ in labelled]
        regression = torch.cat([self.box_coder.encode(matched, anchors) for _, matched in labelled])
        sampled = self.sampler(labels)
        positive = torch.where(torch.cat([pos for pos, _ in sampled]))[0]
        negative = torch.where(torch.cat([neg for _, neg in sampled]))[0]
        chosen = torch.cat((positive, negative))
        box_loss = F.smooth_l1_loss(deltas.reshape(-1, 4)[positive], regression[positive], beta=1 / 9,
                                    reduction="sum") / chosen.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(objectness.reshape(-1)[chosen], torch.cat(labels)[chosen])
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}
