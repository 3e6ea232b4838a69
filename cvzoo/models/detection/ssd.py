"""SSD (Liu et al. 2016, "SSD: Single Shot MultiBox Detector"): one convolutional pass predicts, at every
default box of six feature maps of decreasing resolution, the class scores and the box offsets.

The parts, as torchvision builds ``ssd300_vgg16`` (so that its checkpoints load and give the same
detections):

- the image transform: every image is resized to 300 x 300, its aspect ratio not kept, after subtracting
  the Caffe VGG mean (``DetectorTransform(fixed_size=...)``);
- the VGG-16 feature extractor (:class:`VGGExtractor`): the registered ``vgg16`` classifier's convolutions
  up to conv4_3 (L2-normalised and rescaled, Liu et al. sec. 3.1 / ParseNet), conv5 and pool5 as 3x3
  stride 1, fc6/fc7 turned into a dilated 3x3 and a 1x1 conv, then four extra blocks (Fig. 2);
- the head: one 3x3 conv per map for the class logits and one for the offsets (:class:`SSDHead`);
- default boxes (:func:`cvzoo.ops.ssd_default_boxes`, sec. 2.2 "Choosing scales and aspect ratios");
- matching (sec. 2.2 "Matching strategy"): each ground truth takes the default box it overlaps most, and
  every default box with IoU >= 0.5 its best ground truth (:func:`ssd_match`);
- the loss (sec. 2.2 "Training objective" and "Hard negative mining"): softmax cross-entropy on the
  positives and on the negatives of highest loss, three per positive, plus smooth L1 on the offsets
  (:class:`SSDBoxCoder`, variances 0.1 / 0.2), both divided by the number of positives;
- inference: softmax, per class the boxes above 0.01 (at most 400), class-wise NMS at 0.45, 200 per image.

SSDlite (``cvzoo.models.detection.ssdlite``) changes the extractor and the head, not these.

Labels: the dataset's classes are ``0 .. K-1``; the head predicts ``K + 1`` classes with 0 = background,
so a torchvision label is ours + 1 (COCO checkpoints: ``num_classes=90``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cvzoo.losses import smooth_l1_loss
from cvzoo.models.backbones import create_backbone
from cvzoo.models.detection.base import Detections, InputPolicy
from cvzoo.models.detection.one_pass import DetectSettings, OnePassDetector
from cvzoo.models.detection.transform import DetectorTransform, resize_boxes
from cvzoo.models.registry import register_model
from cvzoo.ops import IoUMatcher, SSDBoxCoder, box_iou, ssd_default_boxes
from cvzoo.ops.nms import batched_nms
from cvzoo.ops.nms import soft_nms as soft_nms_fn

Target = dict[str, torch.Tensor]

# torchvision's SSD300 reference (references/detection: 120 epochs, SGD lr 0.002 for 4 images x 8 GPUs,
# momentum 0.9, weight decay 5e-4, lr / 10 at epochs 80 and 110, "ssd" augmentation). cvzoo trains on one
# device: 4 images per batch and the lr scaled linearly with the batch (0.002 * 4 / 32 = 2.5e-4), the R-CNN
# recipe's convention. The drops are fractions of the run, so a shorter run keeps the schedule's shape.
SSD_AUGMENT_OFF: dict[str, Any] = {
    "detect.augment.mosaic": 0.0, "detect.augment.close_mosaic": 0, "detect.augment.mixup": 0.0,
    "detect.augment.hsv_h": 0.0, "detect.augment.hsv_s": 0.0, "detect.augment.hsv_v": 0.0,
    "detect.augment.degrees": 0.0, "detect.augment.translate": 0.0, "detect.augment.affine_scale": 0.0,
    "detect.augment.shear": 0.0,
}
SSD300_RECIPE: dict[str, Any] = {
    # Unused by SSD, which resizes every image to 300 x 300 itself; a multiple of 32 keeps the detection
    # config's check of data.img_size (written for letterboxing detectors) satisfied.
    "data.img_size": 320,
    "data.batch_size": 4,
    "optim.name": "sgd",
    "optim.lr": 2.5e-4,
    "optim.momentum": 0.9,
    "optim.nesterov": False,
    "optim.weight_decay": 5e-4,
    "train.epochs": 120,
    "train.ema": False,
    "train.nominal_batch_size": 0,
    "scheduler.name": "multistep",
    "scheduler.milestone_fractions": (80 / 120, 110 / 120),
    "scheduler.gamma": 0.1,
    "scheduler.warmup_epochs": 0.0,
    **SSD_AUGMENT_OFF,
    # torchvision's "ssd" preset: photometric distortion, zoom out (fill = mean), IoU crop, flip.
    "detect.augment.photometric": 0.5,
    "detect.augment.zoom_out": 0.5,
    "detect.augment.iou_crop": 1.0,
    "detect.augment.hflip": 0.5,
}

SSD300_ASPECT_RATIOS = ((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,))
SSD300_SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
SSD300_STEPS = (8, 16, 32, 64, 100, 300)
# The Caffe VGG's input: 0..255 pixels minus the ImageNet mean (std 1/255 undoes ToTensor's scaling).
VGG_CAFFE_MEAN = (0.48235, 0.45882, 0.40784)
VGG_CAFFE_STD = (1.0 / 255.0,) * 3
# ``augment_keys``: the detect.augment keys an SSD honours (its preset, on images at their own size).
SSD_AUGMENT_KEYS = ("hflip", "hsv_h", "hsv_s", "hsv_v", "photometric", "zoom_out", "iou_crop")


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform conv weights, zero biases: the initialisation of SSD's added layers (torchvision's)."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


# ------------------------------------------------------------------------------------------------ parts


class L2Norm(nn.Module):
    """Each position's channel vector L2-normalised, then scaled per channel by a learned weight (initially
    20): conv4_3's activations are much larger than the deeper maps' (Liu et al. sec. 3.1, after ParseNet)."""

    def __init__(self, channels: int, scale: float = 20.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight.view(1, -1, 1, 1) * F.normalize(x)


class VGGExtractor(nn.Module):
    """VGG-16 -> SSD300's six maps (38, 19, 10, 5, 3, 1 cells at 300 px): conv4_3 (L2Norm), fc7, conv8_2 ..
    conv11_2 with 512, 1024, 512, 256, 256, 256 channels.

    ``features`` is the registered classifier's ``features`` up to conv5_3 (indices as torchvision's
    ``vgg16().features``); pool3 rounds up (``ceil_mode``) so that conv4_3 is 38 x 38 at 300 px, as in the
    Caffe model. pool5 becomes a 3x3 stride-1 pool and fc6 a 3x3 conv dilated 6 (the "atrous" fc6 of the
    paper's footnote), fc7 a 1x1 conv.

    Args:
        weights: local checkpoint of the ``vgg16`` classifier.
        trainable_layers: VGG stages that train, counted from the last (0..5).
        in_channels: image channels.
    """

    conv4_3_end = 23  # features[:23] ends with conv4_3's ReLU; features[23] is pool4

    def __init__(self, weights: str | None = None, trainable_layers: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        # Only the convolutions are kept: a one-unit fc6/fc7 spares building 120 M classifier parameters (a
        # checkpoint's classifier tensors then do not fit and are skipped, as a head is).
        vgg = create_backbone("vgg16", in_channels, weights, num_classes=0, hidden_dim=1)
        pools = [i for i, layer in enumerate(vgg.features) if isinstance(layer, nn.MaxPool2d)]
        vgg.features[pools[2]].ceil_mode = True
        self.features = vgg.features[: pools[-1]]  # pool5 is replaced below
        stage_starts = [0] + pools[:-1]
        if not 0 <= trainable_layers <= len(stage_starts):
            raise ValueError(f"trainable_backbone_layers must be in [0, {len(stage_starts)}] for VGG-16, "
                             f"got {trainable_layers}")
        frozen = len(self.features) if trainable_layers == 0 else stage_starts[len(stage_starts) - trainable_layers]
        for layer in self.features[:frozen]:
            layer.requires_grad_(False)
        self.l2norm = L2Norm(512)
        self.fc = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            nn.Conv2d(512, 1024, 3, padding=6, dilation=6),  # fc6
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, 1),  # fc7
            nn.ReLU(inplace=True),
        )
        # (in, squeezed, out, stride, padding) of conv8_2 .. conv11_2: 1x1 squeeze, then 3x3.
        extra = ((1024, 256, 512, 2, 1), (512, 128, 256, 2, 1), (256, 128, 256, 1, 0), (256, 128, 256, 1, 0))
        self.extra = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, mid, 1), nn.ReLU(inplace=True),
                          nn.Conv2d(mid, cout, 3, stride=stride, padding=padding), nn.ReLU(inplace=True))
            for cin, mid, cout, stride, padding in extra
        )
        xavier_init(self.fc)
        xavier_init(self.extra)
        self.out_channels = [512, 1024, 512, 256, 256, 256]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        for layer in self.features[: self.conv4_3_end]:
            x = layer(x)
        maps = [self.l2norm(x)]
        for layer in self.features[self.conv4_3_end:]:
            x = layer(x)
        x = self.fc(x)
        maps.append(x)
        for block in self.extra:
            x = block(x)
            maps.append(x)
        return maps


class SSDHead(nn.Module):
    """Per feature map, a predictor of ``K + 1`` class logits and one of 4 box offsets per default box.

    Args:
        in_channels: channels of each map.
        boxes_per_cell: default boxes per cell of each map.
        num_logits: classes including the background.
        predictor: ``(in_channels, out_channels) -> module``; SSD's is a 3x3 conv.
    """

    def __init__(self, in_channels: Sequence[int], boxes_per_cell: Sequence[int], num_logits: int,
                 predictor: Any = None) -> None:
        super().__init__()
        predictor = predictor or (lambda cin, cout: nn.Conv2d(cin, cout, 3, padding=1))
        self.num_logits = num_logits
        self.classification = nn.ModuleList(predictor(c, n * num_logits) for c, n in zip(in_channels, boxes_per_cell))
        self.regression = nn.ModuleList(predictor(c, n * 4) for c, n in zip(in_channels, boxes_per_cell))

    @staticmethod
    def flatten(maps: Sequence[torch.Tensor], columns: int) -> torch.Tensor:
        """``[B, A * columns, H, W]`` per map -> ``[B, sum H W A, columns]``, ordered map, cell (row-major),
        default box: the order of :func:`~cvzoo.ops.ssd_default_boxes`."""
        flat = []
        for x in maps:
            batch, _, height, width = x.shape
            flat.append(x.view(batch, -1, columns, height, width).permute(0, 3, 4, 1, 2).reshape(batch, -1, columns))
        return torch.cat(flat, dim=1)

    def forward(self, maps: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> ``{"bbox_regression": [B, A, 4], "cls_logits": [B, A, K + 1]}``."""
        return {
            "bbox_regression": self.flatten([head(x) for head, x in zip(self.regression, maps)], 4),
            "cls_logits": self.flatten([head(x) for head, x in zip(self.classification, maps)], self.num_logits),
        }


def ssd_match(gt_boxes: torch.Tensor, default_boxes: torch.Tensor, iou_threshold: float = 0.5) -> torch.Tensor:
    """SSD's matching (Liu et al. sec. 2.2): the index of each default box's ground truth, -1 for background.

    A default box with IoU >= ``iou_threshold`` with some ground truth takes the one it overlaps most; then
    each ground truth takes the default box it overlaps most, whatever the IoU, so that none is left without
    a positive (the later ground truth wins a box that is two ground truths' best).

    Args:
        gt_boxes: ``[M, 4]`` xyxy.
        default_boxes: ``[A, 4]`` xyxy, same pixels.

    Returns:
        ``[A]`` int64.
    """
    if len(gt_boxes) == 0:
        return torch.full((len(default_boxes),), -1, dtype=torch.int64, device=default_boxes.device)
    quality = box_iou(gt_boxes, default_boxes)
    matches = IoUMatcher(iou_threshold, iou_threshold)(quality)
    best_box = quality.max(dim=1).indices
    matches[best_box] = torch.arange(len(best_box), dtype=torch.int64, device=matches.device)
    return matches


def hard_negatives(cls_loss: torch.Tensor, positive: torch.Tensor, neg_to_pos: float) -> torch.Tensor:
    """Hard negative mining (Liu et al. sec. 2.2): per image, the ``neg_to_pos`` x #positives negatives of
    highest classification loss.

    Args:
        cls_loss: ``[B, A]`` per-default-box cross-entropy.
        positive: ``[B, A]`` bool.
        neg_to_pos: negatives per positive (3).

    Returns:
        ``[B, A]`` bool, the negatives that train. An image without positives trains no negative.
    """
    budget = neg_to_pos * positive.sum(1, keepdim=True)
    ranked = cls_loss.clone()
    ranked[positive] = -float("inf")  # positives sort last
    order = ranked.sort(1, descending=True).indices
    rank = order.sort(1).indices  # each box's place in the descending order
    return rank < budget


def to_head_target(target: Target, device: torch.device) -> Target:
    """A canonical target (0-based ``labels``) -> the head's (1-based, 0 = background), on ``device``."""
    head = {"boxes": target["boxes"].to(device=device, dtype=torch.float32),
            "labels": target["labels"].to(device=device, dtype=torch.int64) + 1}
    if "masks" in target:
        head["masks"] = target["masks"].to(device)
    return head


# ------------------------------------------------------------------------------------------------ model


class SSD(OnePassDetector):
    """SSD300 with a VGG-16 backbone (torchvision's ``ssd300_vgg16``).

    Args:
        num_classes: object classes ``K`` (90 fits torchvision's COCO checkpoints).
        backbone_weights: local checkpoint of the ``vgg16`` classifier (its head skipped).
        trainable_backbone_layers: VGG stages that train, counted from the last; None: 4 for a model that
            starts from trained weights (``fine_tune`` or ``backbone_weights``), else all 5 (torchvision's).
        fine_tune: the weights will be loaded from a trained checkpoint (``create_model(..., weights=)``).
        size: ``(height, width)`` every image is resized to.
        mean, std: normalisation of the [0, 1] RGB input.
        aspect_ratios: per map, the default-box ratios other than 1.
        scales: the ``m + 1`` default-box scales (None: from ``min_ratio`` / ``max_ratio``).
        steps: per map, the pixel step between default-box centres (None: the map's cell).
        min_ratio, max_ratio: ``s_min`` and ``s_max`` when ``scales`` is None.
        score_thresh, nms_thresh, detections_per_img, topk_candidates: inference (score floor per class,
            class-wise NMS IoU, detections kept, candidates per class before NMS).
        iou_thresh: matching IoU.
        positive_fraction: positives among the trained boxes (0.25: three negatives per positive).
        in_channels: image channels.
    """

    input_policy: ClassVar[InputPolicy] = InputPolicy("model", size_divisible=1)
    loss_reduction: ClassVar[str] = "mean"  # type: ignore[assignment]
    default_recipe: ClassVar[dict[str, Any]] = SSD300_RECIPE
    recipe_name: ClassVar[str] = "torchvision SSD300"
    exportable: ClassVar[bool] = False
    augment_keys: ClassVar[tuple[str, ...]] = SSD_AUGMENT_KEYS

    def __init__(
        self,
        num_classes: int = 90,
        backbone_weights: str | None = None,
        trainable_backbone_layers: int | None = None,
        fine_tune: bool = False,
        size: tuple[int, int] = (300, 300),
        mean: Sequence[float] = VGG_CAFFE_MEAN,
        std: Sequence[float] = VGG_CAFFE_STD,
        aspect_ratios: Sequence[Sequence[float]] = SSD300_ASPECT_RATIOS,
        scales: Sequence[float] | None = SSD300_SCALES,
        steps: Sequence[int] | None = SSD300_STEPS,
        min_ratio: float = 0.15,
        max_ratio: float = 0.9,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        topk_candidates: int = 400,
        iou_thresh: float = 0.5,
        positive_fraction: float = 0.25,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if not 0 < positive_fraction < 1:
            raise ValueError(f"positive_fraction must be in (0, 1), got {positive_fraction}")
        self.num_classes = num_classes
        self.size = (int(size[0]), int(size[1]))
        self.transform = DetectorTransform(min(self.size), max(self.size), mean, std, size_divisible=1,
                                           fixed_size=self.size)
        trained = fine_tune or backbone_weights is not None
        self.backbone = self.build_backbone(backbone_weights, trainable_backbone_layers, trained, in_channels)
        self.aspect_ratios = tuple(tuple(float(r) for r in level) for level in aspect_ratios)
        if len(self.aspect_ratios) != len(self.backbone.out_channels):
            raise ValueError(f"{len(self.aspect_ratios)} aspect-ratio lists for {len(self.backbone.out_channels)} "
                             "feature maps")
        self.scales = None if scales is None else tuple(float(s) for s in scales)
        self.steps = None if steps is None else tuple(int(s) for s in steps)
        self.min_ratio, self.max_ratio = min_ratio, max_ratio
        boxes_per_cell = [2 + 2 * len(r) for r in self.aspect_ratios]
        self.head = self.build_head(self.backbone.out_channels, boxes_per_cell, num_classes + 1)
        self.box_coder = SSDBoxCoder()
        self.iou_thresh = iou_thresh
        self.neg_to_pos = (1.0 - positive_fraction) / positive_fraction
        self.detect_settings = DetectSettings(score_thresh, nms_thresh, detections_per_img)
        self.topk_candidates = topk_candidates
        self.check_input_size()

    def build_backbone(self, weights: str | None, trainable_layers: int | None, trained: bool,
                       in_channels: int) -> nn.Module:
        """The feature extractor (with an ``out_channels`` list)."""
        return VGGExtractor(weights, (4 if trained else 5) if trainable_layers is None else trainable_layers,
                            in_channels)

    def build_head(self, in_channels: Sequence[int], boxes_per_cell: Sequence[int], num_logits: int) -> nn.Module:
        head = SSDHead(in_channels, boxes_per_cell, num_logits)
        xavier_init(head)
        return head

    def check_input_size(self) -> None:
        """A clear error for a ``size`` whose last maps would vanish (SSD300's conv10_2 / conv11_2 are
        unpadded 3x3 convs: below about 260 px they have nothing left to convolve). Run on the meta device:
        shapes only, no arithmetic."""
        meta = {name: tensor.to("meta") for name, tensor in
                [*self.backbone.named_parameters(), *self.backbone.named_buffers()]}
        training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                maps = functional_call(self.backbone, meta, (torch.zeros(1, len(self.transform.mean), *self.size,
                                                                         device="meta"),))
        except RuntimeError as err:
            raise ValueError(f"{type(self).__name__}: input size {self.size} is too small for its feature "
                             f"maps ({str(err).splitlines()[0]})") from None
        finally:
            self.backbone.train(training)
        self.feature_sizes = [tuple(m.shape[-2:]) for m in maps]

    # ----------------------------------------------------------------------------------- default boxes

    def default_boxes(self, feature_sizes: Sequence[Sequence[int]], device: torch.device,
                      dtype: torch.dtype) -> torch.Tensor:
        """``[A, 4]`` xyxy default boxes in pixels of the resized image (torchvision's DefaultBoxGenerator:
        normalised cxcywh, widths clipped to [0, 1], corners scaled by the image's width and height)."""
        height, width = self.size
        boxes = ssd_default_boxes(feature_sizes, self.min_ratio, self.max_ratio, self.aspect_ratios, self.scales,
                                  self.steps, self.size if self.steps is not None else None).to(device, dtype)
        scale = torch.tensor([width, height], device=device)
        return torch.cat(((boxes[:, :2] - 0.5 * boxes[:, 2:]) * scale, (boxes[:, :2] + 0.5 * boxes[:, 2:]) * scale), -1)

    # ------------------------------------------------------------------------------------- entry points

    def export_module(self) -> nn.Module:
        """One image ``[1, 3, H, W]`` (any size, [0, 1]) -> its detections with the model's thresholds."""
        if not self.exportable:
            raise NotImplementedError(f"{type(self).__name__} has no checked export path yet")
        from cvzoo.models.detection.rcnn.faster_rcnn import RCNNExport

        return RCNNExport(self)

    # ---------------------------------------------------------------------------------------- pipeline

    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        sizes, crops = self.image_crops(images, image_sizes)
        head_targets = None if targets is None else [to_head_target(t, images.device) for t in targets]
        batch, resized, head_targets = self.transform(crops, head_targets)
        maps = self.backbone(batch)
        outputs = self.head(maps)
        boxes = self.default_boxes([m.shape[-2:] for m in maps], batch.device, maps[0].dtype)
        losses: dict[str, torch.Tensor] = {}
        if head_targets is not None:
            losses = self.compute_loss(outputs, boxes, head_targets)
            losses = {"loss": sum(losses.values()), **{k: v.detach() for k, v in losses.items()}}
        detections: list[Detections] = []
        if settings is not None:
            detections = [
                Detections(resize_boxes(d.boxes, new, old), d.scores, d.labels)
                for d, new, old in zip(self.postprocess(outputs, boxes, resized, **vars(settings)), resized, sizes)
            ]
        return losses, detections

    def compute_loss(self, outputs: dict[str, torch.Tensor], default_boxes: torch.Tensor,
                     targets: Sequence[Target]) -> dict[str, torch.Tensor]:
        """SSD's loss (Liu et al. eq. 1, torchvision's reduction): ``{"bbox_regression", "classification"}``,
        each a sum over the batch divided by its number of positives (at least 1).

        Args:
            outputs: the head's ``bbox_regression [B, A, 4]`` and ``cls_logits [B, A, K + 1]``.
            default_boxes: ``[A, 4]`` xyxy in resized pixels.
            targets: per image ``boxes`` (resized pixels) and ``labels`` (1-based).
        """
        regression, logits = outputs["bbox_regression"], outputs["cls_logits"]
        box_losses, class_targets, num_positive = [], [], 0
        for target, deltas in zip(targets, regression):
            matches = ssd_match(target["boxes"], default_boxes, self.iou_thresh)
            positive = torch.where(matches >= 0)[0]
            matched = matches[positive]
            num_positive += matched.numel()
            wanted = self.box_coder.encode(target["boxes"][matched], default_boxes[positive])
            box_losses.append(smooth_l1_loss(deltas[positive], wanted, beta=1.0, reduction="sum"))
            labels = torch.zeros(len(default_boxes), dtype=torch.int64, device=logits.device)
            labels[positive] = target["labels"][matched]
            class_targets.append(labels)
        labels = torch.stack(class_targets)
        cls_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                   reduction="none").view(labels.shape)
        positive = labels > 0
        negative = hard_negatives(cls_loss, positive, self.neg_to_pos)
        normaliser = max(1, num_positive)
        return {"bbox_regression": torch.stack(box_losses).sum() / normaliser,
                "classification": (cls_loss[positive].sum() + cls_loss[negative].sum()) / normaliser}

    def postprocess(self, outputs: dict[str, torch.Tensor], default_boxes: torch.Tensor,
                    image_sizes: Sequence[tuple[int, int]], score_thresh: float, nms_thresh: float,
                    detections_per_img: int, classes: Sequence[int] | None = None, soft_nms: str | None = None,
                    agnostic: bool = False) -> list[Detections]:
        """Softmax scores; per class (``classes`` only, 0-based) the boxes scoring above ``score_thresh``, at
        most ``topk_candidates``; class-wise (or ``agnostic``) NMS or Soft-NMS; the best
        ``detections_per_img``. Boxes in resized pixels, clipped to the image; labels 0-based."""
        scores_all = F.softmax(outputs["cls_logits"], dim=-1)
        wanted = range(1, scores_all.shape[-1]) if classes is None else [int(c) + 1 for c in classes]
        results = []
        for deltas, scores, (height, width) in zip(outputs["bbox_regression"], scores_all, image_sizes):
            boxes = self.box_coder.decode(deltas, default_boxes)
            boxes = torch.stack((boxes[:, 0].clamp(0, width), boxes[:, 1].clamp(0, height),
                                 boxes[:, 2].clamp(0, width), boxes[:, 3].clamp(0, height)), dim=1)
            kept_boxes, kept_scores, kept_labels = [], [], []
            for label in wanted:
                score = scores[:, label]
                keep = score > score_thresh
                score, box = score[keep], boxes[keep]
                score, top = score.topk(topk_count(score, self.topk_candidates))
                kept_boxes.append(box[top])
                kept_scores.append(score)
                kept_labels.append(torch.full_like(score, label, dtype=torch.int64))
            box, score, label = torch.cat(kept_boxes), torch.cat(kept_scores), torch.cat(kept_labels)
            groups = torch.zeros_like(label) if agnostic else label
            if soft_nms:
                keep, score_kept = soft_nms_fn(box, score, iou_threshold=nms_thresh, method=soft_nms, idxs=groups)
                order = score_kept.argsort(descending=True)[:detections_per_img]
                keep, score_kept = keep[order], score_kept[order]
            else:
                keep = batched_nms(box, score, groups, nms_thresh)[:detections_per_img]
                score_kept = score[keep]
            results.append(Detections(box[keep], score_kept, label[keep] - 1))
        return results


def topk_count(scores: torch.Tensor, k: int) -> int | torch.Tensor:
    """``min(k, len(scores))``; while tracing for ONNX a tensor, so that the graph follows the count."""
    if not torch.jit.is_tracing():
        return min(k, scores.shape[0])
    count = torch._shape_as_tensor(scores)[0]
    return torch.clamp(count, max=k)


register_model("ssd300_vgg16", SSD, reference="torchvision:ssd300_vgg16", task="detect", input_size=(3, 300, 300))
