"""DETR, the DEtection TRansformer (Carion et al. 2020, "End-to-End Object Detection with Transformers").

A CNN's last feature map, projected to the transformer's width and flattened, goes through a transformer
encoder; a decoder turns N learned object queries into N predictions at once, each a class (or "no object")
and a box, trained with a set loss over a one-to-one Hungarian matching (``criterion.py``). There are no
anchors and no NMS: the matching teaches each object to exactly one query.

Parts, top to bottom: the image transform (ImageNet normalisation, shorter side 800, longer at most 1333:
sec. 4, "Technical details"; ``detection.transform.DetectorTransform``), the backbone (``backbone.py``),
a 1x1 conv to ``hidden_dim``, the sine positional encoding of the valid cells (``position.py``), the
transformer (``transformer.py``), a linear class head over ``K + 1`` classes and a 3-layer MLP box head
predicting normalised ``(cx, cy, w, h)`` through a sigmoid. Images of different sizes share a padded batch;
the padding mask keeps the transformer from attending to the padding and the positions count valid cells
only, and boxes are relative to each image's own size.

Labels: the dataset's classes are ``0 .. K-1``; class ``K`` is "no object". transformers'
``DetrForObjectDetection`` uses the same layout, so its checkpoints load through ``remap.py`` with the same
``num_classes`` (COCO checkpoints: 91, label = COCO category id).

Inference (sec. 4 and transformers' ``post_process_object_detection``): softmax over the ``K + 1`` classes,
the best real class of each query is its label and score, boxes are scaled to each image's pixels; the
queries above the score threshold are the detections, by decreasing score (no NMS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.models.detection.base import Detections, InputPolicy
from cvzoo.models.detection.detr.backbone import LastStageBackbone, feature_mask, pixel_mask
from cvzoo.models.detection.detr.criterion import SetCriterion
from cvzoo.models.detection.detr.position import SinePositionEncoding
from cvzoo.models.detection.detr.transformer import Transformer
from cvzoo.models.detection.one_pass import DetectSettings, OnePassDetector
from cvzoo.models.detection.rcnn.faster_rcnn import NO_YOLO_AUGMENTATION, RCNNExport
from cvzoo.models.detection.transform import DetectorTransform
from cvzoo.models.registry import register_model
from cvzoo.ops import box_convert

Target = dict[str, torch.Tensor]

# DETR's training recipe (sec. 4 and appendix A.4) for one device: AdamW, lr 1e-4 for the transformer and
# 1e-5 for the backbone, weight decay 1e-4, gradient norm clipped at 0.1, 4 images per GPU (the paper uses 16
# GPUs; its lr is not scaled with the batch), 300 epochs with the lr divided by 10 after 200. Horizontal
# flips; DETR's multi-scale resize (shorter side 480..800) and random crops are not in this default (pass
# ``--set model.kwargs.min_size=[480,...,800]`` for the scales).
DETR_RECIPE: dict[str, Any] = {
    "data.batch_size": 4,
    "optim.name": "adamw",
    "optim.lr": 1e-4,
    "optim.backbone_lr_mult": 0.1,
    "optim.weight_decay": 1e-4,
    "train.clip_grad_norm": 0.1,
    "train.epochs": 300,
    "train.ema": False,
    "train.nominal_batch_size": 0,
    "scheduler.name": "multistep",
    "scheduler.milestone_fractions": (200 / 300,),
    "scheduler.gamma": 0.1,
    "scheduler.warmup_epochs": 0.0,
    **NO_YOLO_AUGMENTATION,
}


class BoxHead(nn.Module):
    """DETR's box FFN: ``num_layers`` linear layers with ReLU between them (3 layers, ``hidden_dim`` wide)."""

    def __init__(self, in_features: int, hidden: int, out_features: int = 4, num_layers: int = 3) -> None:
        super().__init__()
        widths = [in_features] + [hidden] * (num_layers - 1) + [out_features]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x


class DETR(OnePassDetector):
    """DETR with a ResNet backbone.

    Args:
        num_classes: object classes ``K`` (91 fits the COCO checkpoints, whose label is the category id).
        backbone: a registered classifier (``resnet50``, ``resnet101``, ``resnet18``, ...).
        backbone_weights: local classifier checkpoint for the backbone (head skipped).
        dilation: the DC5 backbone (last stage dilated, stride 16).
        trainable_backbone_layers: backbone stages that train, counted from the last; None: 3 (``layer2`` ..
            ``layer4``, as DETR) for a model that starts from trained weights, else all 5.
        frozen_batch_norm: freeze the backbone's batch norms; None: for a model that starts from trained weights.
        fine_tune: the weights will be loaded from a trained checkpoint (``create_model(..., weights=)`` and
            ``--weights`` set it), so the backbone is built as for fine-tuning.
        hidden_dim: the transformer's width (256).
        num_heads: attention heads (8).
        encoder_layers, decoder_layers: depths (6, 6).
        ffn_dim: FFN hidden width (2048).
        dropout: the transformer's dropout (0.1).
        num_queries: object queries N, the most objects an image can hold (100).
        aux_loss: add the losses of every decoder layer's predictions (training).
        class_weight, bbox_weight, giou_weight: loss weights and matching costs (1, 5, 2).
        no_object_weight: the no-object class's weight in the cross entropy (0.1).
        min_size, max_size: the resize (shorter side, cap on the longer); a sequence of ``min_size`` draws
            one per training image.
        score_thresh: the score above which a query is a detection in ``predict`` (validation keeps all).
        detections_per_img: at most this many detections per image.
        in_channels: image channels.
    """

    input_policy: ClassVar[InputPolicy] = InputPolicy("model", size_divisible=32)
    loss_reduction: ClassVar[str] = "mean"  # type: ignore[assignment]
    default_recipe: ClassVar[dict[str, Any]] = DETR_RECIPE
    recipe_name: ClassVar[str] = "DETR (Carion et al. 2020)"
    exportable: ClassVar[bool] = True
    # COCO AP is computed over all N queries (DETR's evaluation): no score floor in validation.
    validation_settings: ClassVar[dict[str, Any]] = {"conf_threshold": 0.0}

    def __init__(
        self,
        num_classes: int = 91,
        backbone: str = "resnet50",
        backbone_weights: str | None = None,
        dilation: bool = False,
        trainable_backbone_layers: int | None = None,
        frozen_batch_norm: bool | None = None,
        fine_tune: bool = False,
        hidden_dim: int = 256,
        num_heads: int = 8,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        num_queries: int = 100,
        aux_loss: bool = True,
        class_weight: float = 1.0,
        bbox_weight: float = 5.0,
        giou_weight: float = 2.0,
        no_object_weight: float = 0.1,
        min_size: int | Sequence[int] = 800,
        max_size: int = 1333,
        score_thresh: float = 0.5,
        detections_per_img: int = 100,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (half of it encodes rows, half columns), got {hidden_dim}")
        self.num_classes = num_classes
        self.aux_loss = aux_loss
        trained = fine_tune or backbone_weights is not None
        trainable_backbone_layers = (3 if trained else 5) if trainable_backbone_layers is None else trainable_backbone_layers
        frozen_batch_norm = trained if frozen_batch_norm is None else frozen_batch_norm
        # DETR pads a batch to its largest image only (no multiple of the stride): the mask covers the rest.
        self.transform = DetectorTransform(min_size, max_size, size_divisible=1)
        self.backbone = LastStageBackbone(backbone, backbone_weights, dilation, trainable_backbone_layers,
                                          frozen_batch_norm, in_channels)
        self.input_proj = nn.Conv2d(self.backbone.out_channels, hidden_dim, 1)
        self.position = SinePositionEncoding(hidden_dim // 2)
        self.transformer = Transformer(hidden_dim, num_heads, encoder_layers, decoder_layers, ffn_dim, dropout)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        self.class_head = nn.Linear(hidden_dim, num_classes + 1)
        self.box_head = BoxHead(hidden_dim, hidden_dim, 4, 3)
        self.criterion = SetCriterion(num_classes, class_weight, bbox_weight, giou_weight, no_object_weight)
        self.detect_settings = DetectSettings(score_thresh, 1.0, detections_per_img)

    # ----------------------------------------------------------------------------------------- network

    def forward_network(self, batch: torch.Tensor, mask: torch.Tensor | None = None, all_layers: bool = False
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The network on a normalised padded batch (transformers' ``pixel_values`` / ``pixel_mask``).

        Args:
            batch: ``[B, 3, H, W]`` normalised images.
            mask: ``[B, H, W]`` bool, True inside each image; None when no image is padded.
            all_layers: predict from every decoder layer (the auxiliary losses), else from the last.

        Returns:
            ``logits [L, B, N, K + 1]`` and ``boxes [L, B, N, 4]`` (normalised ``cxcywh`` of each image),
            ``L`` the decoder layers or 1.
        """
        features = self.backbone(batch)
        if mask is None:
            cells, key_mask = torch.ones_like(features[:, 0], dtype=torch.bool), None
        else:
            cells = feature_mask(mask, features.shape[-2:])
            key_mask = cells.flatten(1)
        tokens = self.input_proj(features).flatten(2).transpose(1, 2)
        pos = self.position(cells).to(tokens.dtype).flatten(2).transpose(1, 2)
        decoded = self.transformer(tokens, pos, key_mask, self.query_embed.weight, all_layers)
        return self.class_head(decoded), self.box_head(decoded).sigmoid()

    # ------------------------------------------------------------------------------------- entry points

    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        sizes, crops = self.image_crops(images, image_sizes)
        batch, resized, _ = self.transform(crops)
        mask = self.padding_mask(batch, resized)
        logits, boxes = self.forward_network(batch, mask, all_layers=targets is not None and self.aux_loss)
        losses: dict[str, torch.Tensor] = {}
        if targets is not None:
            losses = self.criterion(logits, boxes, [normalized_target(t, size, batch.device)
                                                    for t, size in zip(targets, sizes)])
        detections = [] if settings is None else self.decode(logits[-1], boxes[-1], sizes, settings)
        return losses, detections

    @staticmethod
    def padding_mask(batch: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> torch.Tensor | None:
        """The ``[B, H, W]`` mask of the resized images in ``batch``, or None when none is padded (always
        while exporting one image)."""
        if torch.onnx.is_in_onnx_export():
            return None
        if all((h, w) == tuple(batch.shape[-2:]) for h, w in sizes):
            return None
        return pixel_mask(batch, list(sizes))

    def settings(self, conf_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int | None = None, classes: Sequence[int] | None = None,
                 soft_nms: str | None = None, agnostic: bool = False) -> DetectSettings:
        """The inference settings, the model's own where an argument is None; the NMS settings are errors:
        DETR has no NMS."""
        if iou_threshold is not None or soft_nms or agnostic:
            raise ValueError(f"DETR predicts without NMS: iou_threshold={iou_threshold}, soft_nms={soft_nms}, "
                             f"agnostic={agnostic} do not apply (leave them unset)")
        return super().settings(conf_threshold, None, max_detections, classes)

    def decode(self, logits: torch.Tensor, boxes: torch.Tensor, sizes: Sequence[tuple[Any, Any]],
               settings: DetectSettings) -> list[Detections]:
        """``logits [B, N, K + 1]`` and ``boxes [B, N, 4]`` (normalised cxcywh) -> detections in the pixels of
        each image (``sizes``: ``(H, W)``, ints or traced 0-d tensors), no NMS."""
        scores, labels = logits.softmax(-1)[..., :-1].max(-1)
        results = []
        for image_scores, image_labels, image_boxes, (height, width) in zip(scores, labels, boxes, sizes):
            scale = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=boxes.device)
                                 for v in (width, height, width, height)])
            pixels = box_convert(image_boxes, "cxcywh", "xyxy") * scale
            keep = image_scores > settings.score_thresh
            if settings.classes is not None:
                keep &= torch.isin(image_labels, torch.as_tensor(list(settings.classes), device=labels.device))
            detections = Detections(pixels, image_scores, image_labels).select(keep)
            order = detections.scores.argsort(descending=True)[: settings.detections_per_img]
            results.append(detections.select(order))
        return results

    def export_module(self) -> nn.Module:
        """One image ``[1, 3, H, W]`` (any size, [0, 1]) -> its detections with the model's score threshold
        (``boxes``, ``scores``, ``labels``; :class:`~cvzoo.models.detection.rcnn.faster_rcnn.RCNNExport`)."""
        return RCNNExport(self)


def normalized_target(target: Target, size: tuple[int, int], device: torch.device) -> Target:
    """A canonical target (xyxy pixels of an image of ``size = (H, W)``) -> DETR's: ``cxcywh`` boxes divided
    by the image's width and height, labels on ``device``. The resize scales the image and its boxes alike,
    so the normalised boxes are those of the original pixels."""
    height, width = size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=device)
    boxes = box_convert(target["boxes"].to(device=device, dtype=torch.float32), "xyxy", "cxcywh") / scale
    return {"boxes": boxes, "labels": target["labels"].to(device=device, dtype=torch.int64)}


_DETECT = {"task": "detect", "input_size": (3, 800, 800)}
register_model("detr_resnet50", DETR, reference="transformers:facebook/detr-resnet-50", **_DETECT)
register_model("detr_resnet50_dc5", DETR, dilation=True, reference="transformers:facebook/detr-resnet-50-dc5",
               **_DETECT)
register_model("detr_resnet101", DETR, backbone="resnet101", reference="transformers:facebook/detr-resnet-101",
               **_DETECT)
# A reduced DETR that trains on a CPU: ResNet-18, a 64-wide transformer with two encoder and two decoder
# layers, 20 queries, images at 320 (the synthetic scenes' size). The architecture is DETR's.
register_model("detr_resnet18_tiny", DETR, backbone="resnet18", hidden_dim=64, num_heads=4, encoder_layers=2,
               decoder_layers=2, ffn_dim=128, num_queries=20, min_size=320, max_size=512,
               task="detect", input_size=(3, 320, 320))
