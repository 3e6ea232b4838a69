"""Faster R-CNN (Ren et al. 2015) with a Feature Pyramid Network (Lin et al. 2017): a two-stage detector.

Stage one, the Region Proposal Network, proposes class-agnostic boxes from anchors on every pyramid level;
stage two pools each proposal from its level (RoIAlign, He et al. 2017) and classifies and refines it. The
model resizes its own images (shorter side ``min_size``), so the task hands it images at their own size
(``InputPolicy("model")``) and gets boxes back in those pixels.

Variants as torchvision builds them: ``fasterrcnn_resnet50_fpn`` (frozen batch norm, two-fc box head),
``fasterrcnn_resnet50_fpn_v2`` (Li et al. 2021, "Benchmarking Detection Transfer Learning with Vision
Transformers": batch norm in the FPN and a 4-conv + 1-fc box head, two RPN convs) and the MobileNet v3
models. Their checkpoints load through the ``torchvision:rcnn`` remap (``cvzoo.models.detection.rcnn.remap``).

Labels: the dataset's classes are ``0 .. K-1``; the heads predict ``K + 1`` classes with 0 = background,
so a torchvision label is ours + 1 (COCO checkpoints: ``num_classes=90``, category id = label + 1).

ONNX export (``export_module``, :class:`RCNNExport`): one image ``[1, 3, H, W]`` of any size in, the final
detections out. The export traces the same modules as ``predict``: where the eager code takes a Python int
from a tensor (a size, a count), it checks ``torch.onnx.is_in_onnx_export()`` (or gets a 0-d tensor) and
computes it with tensor ops instead, so that the graph follows the image's size; the eager path is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.models.detection.base import Detections, Detector, InputPolicy
from cvzoo.models.detection.fpn_backbone import fpn_backbone
from cvzoo.models.detection.one_pass import DetectSettings, OnePassDetector
from cvzoo.models.detection.rcnn.poolers import MultiScaleRoIAlign
from cvzoo.models.detection.rcnn.roi_heads import (
    BoxPredictor,
    ConvFCHead,
    RoIHeads,
    SampledProposals,
    TwoMLPHead,
)
from cvzoo.models.detection.rcnn.rpn import ProposalCounts, RegionProposalNetwork, RPNHead
from cvzoo.models.detection.transform import DetectorTransform, resize_boxes
from cvzoo.models.registry import register_model
from cvzoo.ops import AnchorGenerator

Target = dict[str, torch.Tensor]

# The augmentation of torchvision's detection references (R-CNN, RetinaNet, FCOS, SSD aside): the model's own
# min/max-side resize and a horizontal flip; the YOLO-only augmentations (mosaic, mixup, HSV, affine) off.
NO_YOLO_AUGMENTATION: dict[str, Any] = {
    "detect.augment.hflip": 0.5,
    "detect.augment.mosaic": 0.0,
    "detect.augment.close_mosaic": 0,
    "detect.augment.mixup": 0.0,
    "detect.augment.hsv_h": 0.0,
    "detect.augment.hsv_s": 0.0,
    "detect.augment.hsv_v": 0.0,
    "detect.augment.degrees": 0.0,
    "detect.augment.translate": 0.0,
    "detect.augment.affine_scale": 0.0,
    "detect.augment.shear": 0.0,
}

# torchvision's detection reference (references/detection, 26 epochs, lr 0.02 for 16 images, drops at
# epochs 16 and 22, linear warm-up from 0.001) for one device: 4 images per batch, lr scaled linearly.
# The drops are fractions of the run, so a shorter run keeps the schedule's shape. data.img_size (the
# shorter side the model resizes to) is each variant's registered input size (800; 320 for the 320 model).
RCNN_RECIPE: dict[str, Any] = {
    "data.batch_size": 4,
    "optim.name": "sgd",
    "optim.lr": 0.005,
    "optim.momentum": 0.9,
    "optim.nesterov": False,
    "optim.weight_decay": 1e-4,
    "train.epochs": 26,
    "train.ema": False,
    "train.nominal_batch_size": 0,
    "scheduler.name": "multistep",
    "scheduler.milestone_fractions": (16 / 26, 22 / 26),
    "scheduler.gamma": 0.1,
    "scheduler.warmup_epochs": 1.0,
    "scheduler.warmup_start_factor": 0.001,
    **NO_YOLO_AUGMENTATION,
}

FPN_ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))


class FasterRCNN(OnePassDetector):
    """Faster R-CNN with an FPN backbone.

    Args:
        num_classes: object classes ``K`` (90 fits torchvision's COCO checkpoints).
        backbone: a registered classifier (``resnet50``, ``mobilenet_v3_large``, ``resnet18``, ...).
        backbone_weights: local classifier checkpoint for the backbone (head skipped).
        trainable_backbone_layers: backbone stages that train, counted from the last; None: 3 for a model
            that starts from trained weights (``fine_tune`` or ``backbone_weights``), else all 5.
        frozen_batch_norm: freeze the backbone's batch norms; None: for a model that starts from trained
            weights, as torchvision builds them (the statistics of small detection batches would spoil
            trained ones, and frozen identity norms would let an untrained deep backbone blow up).
        fine_tune: the weights will be loaded from a trained checkpoint (``create_model(..., weights=)``
            and ``--weights`` set it), so the backbone is built as for fine-tuning.
        fpn_norm: batch norm in the FPN (v2 recipe).
        rpn_convs: 3x3 convs of the RPN head (1; v2: 2).
        box_head: ``"mlp"`` (two fc, v1) or ``"conv"`` (4 conv + BN, 1 fc, v2).
        min_size, max_size: the resize (shorter side, cap on the longer); a sequence of ``min_size`` draws
            one per training image.
        anchor_sizes: anchor sizes per pyramid level (levels of the RPN: the FPN's plus "pool").
        aspect_ratios: anchor ``h / w`` ratios, the same at every level.
        rpn_*: the RPN's proposal counts (pre-NMS per level, post-NMS per image, train / test), NMS IoU,
            labelling IoUs, minibatch and objectness threshold (torchvision's defaults).
        box_*: the box head's test score threshold, NMS IoU, detections per image, labelling IoUs and
            minibatch (torchvision's defaults).
        in_channels: image channels.
    """

    input_policy: ClassVar[InputPolicy] = InputPolicy("model", size_divisible=32)
    loss_reduction: ClassVar[str] = "mean"  # type: ignore[assignment]
    default_recipe: ClassVar[dict[str, Any]] = RCNN_RECIPE
    recipe_name: ClassVar[str] = "torchvision R-CNN"
    exportable: ClassVar[bool] = True

    def __init__(
        self,
        num_classes: int = 90,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        trainable_backbone_layers: int | None = None,
        frozen_batch_norm: bool | None = None,
        fine_tune: bool = False,
        fpn_norm: bool = False,
        rpn_convs: int = 1,
        box_head: str = "mlp",
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        anchor_sizes: Sequence[Sequence[float]] = FPN_ANCHOR_SIZES,
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_nms_thresh: float = 0.7,
        rpn_fg_iou_thresh: float = 0.7,
        rpn_bg_iou_thresh: float = 0.3,
        rpn_batch_size_per_image: int = 256,
        rpn_positive_fraction: float = 0.5,
        rpn_score_thresh: float = 0.0,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_fg_iou_thresh: float = 0.5,
        box_bg_iou_thresh: float = 0.5,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if box_head not in ("mlp", "conv"):
            raise ValueError(f"box_head must be 'mlp' or 'conv', got {box_head!r}")
        self.num_classes = num_classes
        trained = fine_tune or backbone_weights is not None
        trainable_backbone_layers = (3 if trained else 5) if trainable_backbone_layers is None else trainable_backbone_layers
        frozen_batch_norm = trained if frozen_batch_norm is None else frozen_batch_norm
        self.transform = DetectorTransform(min_size, max_size, size_divisible=self.input_policy.size_divisible)
        self.backbone = fpn_backbone(backbone, backbone_weights, trainable_backbone_layers, frozen_batch_norm,
                                     nn.BatchNorm2d if fpn_norm else None, in_channels)
        channels = self.backbone.out_channels
        anchors = AnchorGenerator(anchor_sizes, [tuple(aspect_ratios)] * len(anchor_sizes))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0], rpn_convs),
            rpn_fg_iou_thresh, rpn_bg_iou_thresh, rpn_batch_size_per_image, rpn_positive_fraction,
            ProposalCounts(rpn_pre_nms_top_n_train, rpn_pre_nms_top_n_test),
            ProposalCounts(rpn_post_nms_top_n_train, rpn_post_nms_top_n_test), rpn_nms_thresh, rpn_score_thresh,
        )
        pool = MultiScaleRoIAlign(7, sampling_ratio=2)
        head = TwoMLPHead(channels * 7 * 7, 1024) if box_head == "mlp" else ConvFCHead(channels, 7)
        self.roi_heads = RoIHeads(pool, head, BoxPredictor(1024, num_classes), box_fg_iou_thresh, box_bg_iou_thresh,
                                  box_batch_size_per_image, box_positive_fraction)
        self.detect_settings = DetectSettings(box_score_thresh, box_nms_thresh, box_detections_per_img)

    # ------------------------------------------------------------------------------------- entry points

    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        sizes, crops = self.image_crops(images, image_sizes)
        head_targets = None if targets is None else [to_head_target(t, images.device) for t in targets]
        batch, resized, head_targets = self.transform(crops, head_targets)
        features = self.backbone(batch)
        proposals, losses = self.rpn(features, (batch.shape[-2], batch.shape[-1]), resized, head_targets)
        pooled = features[: self.backbone.num_pooled_levels]
        if head_targets is not None:
            sampled = self.roi_heads.sample(proposals, head_targets)
            losses = {**self.roi_heads.loss(pooled, sampled, resized),
                      **self.extra_losses(pooled, sampled, resized, head_targets), **losses}
            losses = {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        detections: list[Detections] = []
        if settings is not None:
            raw = self.roi_heads.detect(pooled, proposals, resized, settings)
            detections = self.to_detections(pooled, raw, resized, sizes)
        return losses, detections

    def export_module(self) -> nn.Module:
        """One image ``[1, 3, H, W]`` (any size, [0, 1]) -> its detections with the model's thresholds
        (:class:`RCNNExport`)."""
        return RCNNExport(self)

    def extra_losses(self, features: Sequence[torch.Tensor], sampled: SampledProposals,
                     image_sizes: Sequence[tuple[int, int]], targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """Losses of further heads on the sampled proposals (Mask R-CNN's mask branch); none here."""
        return {}

    def to_detections(self, features: Sequence[torch.Tensor], raw: Sequence[Target],
                      resized: Sequence[tuple[int, int]], sizes: Sequence[tuple[int, int]]) -> list[Detections]:
        """Head detections in resized pixels -> :class:`Detections` in each given image's pixels, 0-based labels."""
        return [Detections(resize_boxes(r["boxes"], new, old), r["scores"], r["labels"] - 1)
                for r, new, old in zip(raw, resized, sizes)]


class RCNNExport(nn.Module):
    """Export wrapper of an R-CNN (and of RetinaNet / FCOS, which resize their images the same way):
    ``images [1, 3, H, W]`` float in [0, 1], any ``H`` and ``W`` -> the image's
    detections with the model's own thresholds (``box_score_thresh``, ``box_nms_thresh``,
    ``box_detections_per_img``), by decreasing score:

    - ``boxes [D, 4]`` xyxy in the input's pixels,
    - ``scores [D]``,
    - ``labels [D]`` int64, 0-based class ids,
    - for Mask R-CNN ``masks [D, H, W]`` float probabilities pasted into the image (threshold at 0.5).

    Called eagerly it is ``model.predict(images)``, so the exported graph can be compared with it at any size.
    ``dynamic_axes`` names the axes that vary (``torch.onnx.export``'s argument).
    """

    # onnxruntime's convolutions round differently from PyTorch's: after ResNet-50 + FPN and two heads the
    # boxes differ by ~3e-3 pixels, as much as PyTorch's own with the backbone channels-last (a tenth of
    # that for the MobileNet models). The export check allows 1e-2 (pixels, scores, mask probabilities).
    parity_atol = 1e-2
    # The TorchScript-based exporter: the graph runs the model's own predict, whose proposal and detection
    # counts come out of torchvision's NMS (data-dependent sizes) and whose image sizes are traced as 0-d
    # tensors under torch.onnx.is_in_onnx_export(); torch.export would need unbacked sizes and an ONNX
    # translation of that NMS (cvzoo.export.onnx.ONNX_EXPORTERS).
    onnx_exporter = "torchscript"

    def __init__(self, model: Detector) -> None:
        super().__init__()
        self.model = model
        masks = getattr(model, "predicts_masks", False)
        self.output_names: tuple[str, ...] = ("boxes", "scores", "labels") + (("masks",) if masks else ())
        self.dynamic_axes: dict[str, dict[int, str]] = {
            "images": {2: "height", 3: "width"}, "boxes": {0: "detections"}, "scores": {0: "detections"},
            "labels": {0: "detections"}, **({"masks": {0: "detections", 1: "height", 2: "width"}} if masks else {}),
        }

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if images.ndim != 4 or images.shape[0] != 1:
            raise ValueError(f"{type(self.model).__name__} exports for one image [1, 3, H, W], got {list(images.shape)}")
        detections = self.model.predict(images)[0]
        outputs = (detections.boxes, detections.scores, detections.labels)
        return outputs + ((detections.masks,) if "masks" in self.output_names else ())


def to_head_target(target: Target, device: torch.device) -> Target:
    """A canonical target (0-based ``labels``) -> the heads' (1-based, 0 = background), on ``device``."""
    head = {"boxes": target["boxes"].to(device=device, dtype=torch.float32),
            "labels": target["labels"].to(device=device, dtype=torch.int64) + 1}
    if "masks" in target:
        head["masks"] = target["masks"].to(device)
    return head


# The v2 recipe (Li et al. 2021): trainable batch norm in the backbone, batch norm in the FPN, two RPN convs,
# the 4-conv + 1-fc box head.
V2_KWARGS: dict[str, Any] = {"frozen_batch_norm": False, "fpn_norm": True, "rpn_convs": 2, "box_head": "conv"}
# torchvision's mobile detectors: two stride-32 maps + pool, 15 anchors per cell on each, a score floor.
MOBILE_KWARGS: dict[str, Any] = {"backbone": "mobilenet_v3_large", "anchor_sizes": ((32, 64, 128, 256, 512),) * 3,
                                 "rpn_score_thresh": 0.05}

_DETECT = {"task": "detect", "input_size": (3, 800, 800)}
register_model("fasterrcnn_resnet50_fpn", FasterRCNN, reference="torchvision:fasterrcnn_resnet50_fpn", **_DETECT)
register_model("fasterrcnn_resnet50_fpn_v2", FasterRCNN, **V2_KWARGS,
               reference="torchvision:fasterrcnn_resnet50_fpn_v2", **_DETECT)
register_model("fasterrcnn_mobilenet_v3_large_fpn", FasterRCNN, **MOBILE_KWARGS,
               reference="torchvision:fasterrcnn_mobilenet_v3_large_fpn", **_DETECT)
register_model(
    "fasterrcnn_mobilenet_v3_large_320_fpn", FasterRCNN, **MOBILE_KWARGS, min_size=320, max_size=640,
    rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=150,
    reference="torchvision:fasterrcnn_mobilenet_v3_large_320_fpn", task="detect", input_size=(3, 320, 320),
)
