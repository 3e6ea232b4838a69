"""What RetinaNet and FCOS share: the conv-tower head branches, the detector skeleton (resize, backbone with
P3-P7, head, anchors, losses or detections) and torchvision's per-level top-k post-processing.

Both are dense one-stage detectors on a five-level pyramid (Lin et al. 2017, "Focal Loss for Dense Object
Detection", sec. 4; Tian et al. 2019, "FCOS", sec. 3): every level runs the same head, each location
predicts ``K`` sigmoid class scores (per anchor for RetinaNet, per point for FCOS) and box offsets. They
resize their own images as R-CNN does (:class:`~cvzoo.models.detection.transform.DetectorTransform`,
``InputPolicy("model")``) so that torchvision's checkpoints give the same detections.

Why not :class:`~cvzoo.models.detection.dense.DenseDetector`: its ``decode -> [B, A, 4 + K]`` keeps the best
class per box before NMS, while torchvision's RetinaNet and FCOS keep every (location, class) pair above the
score threshold, the ``topk_candidates`` best per level, and run class-wise NMS on those; a box may then
survive under two classes. Parity with the checkpoints needs the latter (:func:`select_top_detections`).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.detection.base import Detections, InputPolicy
from cvzoo.models.detection.fpn_backbone import fpn_backbone
from cvzoo.models.detection.one_pass import DetectSettings, OnePassDetector
from cvzoo.models.detection.rcnn.faster_rcnn import RCNN_RECIPE, RCNNExport
from cvzoo.models.detection.transform import DetectorTransform, resize_boxes
from cvzoo.ops import AnchorGenerator, batched_nms, clip_boxes, flatten_anchor_maps, soft_nms

Target = dict[str, torch.Tensor]
Decoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# The pyramid levels P3..P7 and their strides (Lin et al. 2017b, sec. 4: "levels P3 to P7").
PYRAMID_STRIDES = (8, 16, 32, 64, 128)

# torchvision's detection references train RetinaNet and FCOS for 26 epochs, SGD lr 0.01 for 16 images,
# momentum 0.9, weight decay 1e-4, drops at epochs 16 and 22, linear warm-up (references/detection/README.md).
# For one device: 4 images per batch, the lr scaled linearly (0.0025), as the R-CNN recipe scales its 0.02.
ONE_STAGE_RECIPE: dict[str, Any] = {**RCNN_RECIPE, "optim.lr": 0.0025}


def prior_bias(probability: float = 0.01) -> float:
    """The logit bias that starts every class at ``probability`` (Lin et al. 2017b, sec. 4.1 "Initialization":
    without it the ~100k easy negatives swamp the first iterations' loss)."""
    return -math.log((1 - probability) / probability)


class HeadBranch(nn.Module):
    """One branch of a dense head, shared over the pyramid levels: ``num_convs`` 3x3 conv (+ GroupNorm(32)) +
    ReLU, then one 3x3 conv per named prediction.

    Args:
        channels: channels of every level (and of the tower).
        num_convs: tower depth (4 in both papers).
        predictions: name -> output channels of each prediction conv (``A * K`` logits, ``A * 4`` boxes, ...).
        group_norm: GroupNorm with 32 groups after each tower conv (RetinaNet v2, FCOS), else no norm.
        conv_bias: the tower convs have a bias; None: only without a norm (torchvision's RetinaNet v2 drops
            it before GroupNorm, its FCOS keeps it).
    """

    def __init__(self, channels: int, num_convs: int, predictions: dict[str, int], group_norm: bool = False,
                 conv_bias: bool | None = None) -> None:
        super().__init__()
        norm = partial(nn.GroupNorm, 32) if group_norm else None
        self.tower = nn.Sequential(*(ConvNormAct(channels, channels, 3, norm_layer=norm, bias=conv_bias)
                                     for _ in range(num_convs)))
        self.predictions = nn.ModuleDict({name: nn.Conv2d(channels, out, 3, padding=1)
                                          for name, out in predictions.items()})
        for module in self.modules():  # both papers: N(0, 0.01) weights, zero biases
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        """Levels ``[B, C, H_l, W_l]`` -> per prediction, its maps ``[B, out, H_l, W_l]`` per level."""
        towers = [self.tower(x) for x in features]
        return {name: [conv(x) for x in towers] for name, conv in self.predictions.items()}


def select_top_detections(
    scores: Sequence[torch.Tensor],
    regression: Sequence[torch.Tensor],
    anchors: Sequence[torch.Tensor],
    decode: Decoder,
    image_size: tuple[int, int] | tuple[torch.Tensor, torch.Tensor],
    settings: DetectSettings,
    topk_candidates: int,
) -> Detections:
    """One image's detections from its per-level predictions, as torchvision's RetinaNet / FCOS select them.

    On each level, every (location, class) pair scoring above ``settings.score_thresh`` is a candidate and
    the ``topk_candidates`` best are decoded and clipped to the image; then class-wise NMS (or Soft-NMS)
    over all levels, and the ``detections_per_img`` best.

    Args:
        scores: per level ``[N_l, K]`` class probabilities.
        regression: per level ``[N_l, 4]`` box offsets.
        anchors: per level ``[N_l, 4]`` xyxy anchors.
        decode: ``(offsets [n, 4], anchors [n, 4]) -> boxes [n, 4]`` xyxy.
        image_size: ``(height, width)`` the boxes are clipped to.
        settings: thresholds, class filter, agnostic / Soft-NMS.
        topk_candidates: candidates kept per level before NMS.

    Returns:
        Detections in the pixels of ``image_size``, 0-based labels, by decreasing score.
    """
    boxes_all, scores_all, labels_all = [], [], []
    for level_scores, level_regression, level_anchors in zip(scores, regression, anchors):
        num_classes = level_scores.shape[-1]
        if settings.classes is not None:
            wanted = torch.zeros(num_classes, dtype=torch.bool, device=level_scores.device)
            wanted[list(settings.classes)] = True
            level_scores = level_scores * wanted
        flat = level_scores.flatten()
        candidates = torch.where(flat > settings.score_thresh)[0]
        flat = flat[candidates]
        top, order = flat.topk(_top_count(flat, topk_candidates))
        candidates = candidates[order]
        rows = torch.div(candidates, num_classes, rounding_mode="floor")
        boxes = clip_boxes(decode(level_regression[rows], level_anchors[rows]), image_size)
        boxes_all.append(boxes)
        scores_all.append(top)
        labels_all.append(candidates % num_classes)
    boxes, kept_scores, labels = torch.cat(boxes_all), torch.cat(scores_all), torch.cat(labels_all)
    groups = torch.zeros_like(labels) if settings.agnostic else labels
    if settings.soft_nms:
        keep, decayed = soft_nms(boxes, kept_scores, iou_threshold=settings.nms_thresh, method=settings.soft_nms,
                                 idxs=groups)
        order = decayed.argsort(descending=True)[: settings.detections_per_img]
        return Detections(boxes[keep[order]], decayed[order], labels[keep[order]])
    keep = batched_nms(boxes, kept_scores, groups, settings.nms_thresh)[: settings.detections_per_img]
    return Detections(boxes[keep], kept_scores[keep], labels[keep])


def _top_count(values: torch.Tensor, k: int) -> int | torch.Tensor:
    """``min(k, len(values))``; while ``torch.onnx.export`` traces, a tensor so that the count follows the input."""
    if torch.onnx.is_in_onnx_export():
        return torch.clamp(torch._shape_as_tensor(values)[0], max=k)
    return min(k, values.shape[0])


class OneStageDetector(OnePassDetector):
    """RetinaNet / FCOS skeleton: resize + normalise, backbone with FPN P3-P7, head, anchors; then the losses
    (:meth:`compute_loss`) or the detections (:meth:`level_scores`, :meth:`decode`, :func:`select_top_detections`).

    Args:
        num_classes: object classes ``K`` (torchvision's COCO checkpoints: 91, the label being the COCO category
            id; label 0 is unused).
        make_head: ``channels -> head``, the head mapping the levels to ``{name: per-level maps [B, A * V, H, W]}``
            with at least ``"cls_logits"`` and ``"bbox_regression"``.
        output_values: ``V`` of each head output (``{"cls_logits": K, "bbox_regression": 4, ...}``).
        anchor_generator: the anchors of the five levels.
        backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm, fine_tune, in_channels: as
            :class:`~cvzoo.models.detection.rcnn.faster_rcnn.FasterRCNN` (frozen batch norm and 3 trainable
            stages when the model starts from trained weights, unless ``frozen_batch_norm`` says otherwise).
        extra_block: ``"p6p7"`` (P6 from P5) or ``"p6p7_c5"`` (P6 from C5).
        min_size, max_size: the resize (shorter side, cap on the longer).
        settings: the model's own inference thresholds (``predict`` overrides them per call).
        topk_candidates: (location, class) pairs kept per level before NMS.
        in_channels: image channels.
    """

    input_policy: ClassVar[InputPolicy] = InputPolicy("model", size_divisible=32)
    loss_reduction: ClassVar[str] = "mean"  # type: ignore[assignment]
    default_recipe: ClassVar[dict[str, Any]] = ONE_STAGE_RECIPE
    exportable: ClassVar[bool] = True

    def __init__(
        self,
        num_classes: int,
        make_head: Callable[[int], nn.Module],
        output_values: dict[str, int],
        anchor_generator: AnchorGenerator,
        backbone: str,
        backbone_weights: str | None,
        trainable_backbone_layers: int | None,
        frozen_batch_norm: bool | None,
        fine_tune: bool,
        extra_block: str,
        min_size: int | Sequence[int],
        max_size: int,
        settings: DetectSettings,
        topk_candidates: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        trained = fine_tune or backbone_weights is not None
        trainable_backbone_layers = (3 if trained else 5) if trainable_backbone_layers is None else trainable_backbone_layers
        frozen_batch_norm = trained if frozen_batch_norm is None else frozen_batch_norm
        self.transform = DetectorTransform(min_size, max_size, size_divisible=self.input_policy.size_divisible)
        self.backbone = fpn_backbone(backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm, None,
                                     in_channels, strides=PYRAMID_STRIDES[:3], extra_block=extra_block)
        self.anchor_generator = anchor_generator
        self.head = make_head(self.backbone.out_channels)
        self.output_values = dict(output_values)
        self.detect_settings = settings
        self.topk_candidates = topk_candidates

    # ------------------------------------------------------------------------------------- entry points

    def export_module(self) -> nn.Module:
        """One image ``[1, 3, H, W]`` (any size, [0, 1]) -> its detections with the model's thresholds
        (:class:`~cvzoo.models.detection.rcnn.faster_rcnn.RCNNExport`)."""
        return RCNNExport(self)

    # ------------------------------------------------------------------------------------ family pieces

    @abstractmethod
    def compute_loss(self, outputs: dict[str, torch.Tensor], anchors: torch.Tensor, counts: Sequence[int],
                     targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """The family's losses: ``outputs`` ``{name: [B, N, V]}``, ``anchors [N, 4]`` xyxy (resized pixels),
        ``counts`` the anchors per level, ``targets`` in resized pixels with 0-based labels."""

    @abstractmethod
    def level_scores(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class probabilities ``[N, K]`` of one image's level from its outputs ``{name: [N, V]}``."""

    @abstractmethod
    def decode(self, regression: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """Box offsets ``[n, 4]`` at ``anchors [n, 4]`` -> xyxy boxes."""

    # ------------------------------------------------------------------------------------------ pipeline

    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        sizes, crops = self.image_crops(images, image_sizes)
        moved = None if targets is None else [
            {"boxes": t["boxes"].to(device=images.device, dtype=torch.float32),
             "labels": t["labels"].to(device=images.device, dtype=torch.int64)} for t in targets]
        batch, resized, moved = self.transform(crops, moved)
        features = self.backbone(batch)
        maps = self.head(features)
        outputs = {name: flatten_anchor_maps(maps[name], values) for name, values in self.output_values.items()}
        feature_sizes = [f.shape[-2:] for f in features]
        anchors = self.anchor_generator(batch.shape[-2:], feature_sizes, device=batch.device, dtype=batch.dtype)
        per_cell = self.anchor_generator.num_anchors_per_location()
        counts = [h * w * a for (h, w), a in zip(feature_sizes, per_cell)]
        losses: dict[str, torch.Tensor] = {}
        if moved is not None:
            losses = self.compute_loss(outputs, anchors, counts, moved)
            losses = {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        detections: list[Detections] = []
        if settings is not None:
            level_anchors = anchors.split(counts)
            for i, (new, old) in enumerate(zip(resized, sizes)):
                levels = [dict(zip(outputs, parts)) for parts in zip(*(o[i].split(counts) for o in outputs.values()))]
                found = select_top_detections([self.level_scores(level) for level in levels],
                                              [level["bbox_regression"] for level in levels], level_anchors,
                                              self.decode, new, settings, self.topk_candidates)
                found.boxes = resize_boxes(found.boxes, new, old)
                detections.append(found)
        return losses, detections


