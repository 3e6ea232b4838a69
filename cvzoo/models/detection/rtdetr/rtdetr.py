"""RT-DETR, the real-time DETR (Zhao et al. 2024, "DETRs Beat YOLOs on Real-time Object Detection").

Top to bottom: every image resized to a fixed 640 x 640 (aspect ratio not kept, pixels in [0, 1], no
mean / std: RT-DETR's input), a ResNet-vd's C3-C5 (``backbone.py``), the hybrid encoder (``encoder.py``),
a 1x1 conv + BN per level into the decoder's width, IoU-aware query selection and the decoder with
iterative box refinement (``decoder.py``), trained with the varifocal / L1 / GIoU set loss, auxiliary
losses and contrastive denoising (``criterion.py``, ``denoising.py``).

Classes are scored by sigmoids (no "no object" column): label ``k`` of ``K`` is the dataset's class ``k``.
Inference (RT-DETR's post-processor): the ``detections_per_img`` highest of the ``N x K`` sigmoid scores
of the last layer, each a (query, class) detection with the query's box, scaled from normalised
``cxcywh`` to each image's pixels; no NMS (one-to-one matching leaves no duplicates to suppress).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from cvzoo.layers import ConvNormAct
from cvzoo.models.detection.base import Detections, InputPolicy
from cvzoo.models.detection.detr.detr import BoxHead, normalized_target
from cvzoo.models.detection.one_pass import DetectSettings, OnePassDetector
from cvzoo.models.detection.rcnn.faster_rcnn import RCNNExport
from cvzoo.models.detection.rtdetr.backbone import resnet_vd
from cvzoo.models.detection.rtdetr.criterion import RTDETRCriterion
from cvzoo.models.detection.rtdetr.decoder import Decoder, make_anchors
from cvzoo.models.detection.rtdetr.denoising import DenoisingGroups, denoising_groups
from cvzoo.models.detection.rtdetr.encoder import HybridEncoder
from cvzoo.models.detection.ssd import SSD_AUGMENT_KEYS, SSD_AUGMENT_OFF
from cvzoo.models.detection.transform import DetectorTransform
from cvzoo.models.registry import register_model
from cvzoo.ops import box_convert

Target = dict[str, torch.Tensor]

# RT-DETR's recipe (sec. 5.1 and its code's configs) for one device: AdamW, lr 1e-4, the backbone at 1e-5,
# weight decay 1e-4, gradient norm clipped at 0.1, a constant lr after a linear warm-up (2000 iterations
# there; ~1 epoch here), EMA of the weights, 72 epochs (the 6x schedule), fixed 640 x 640 inputs. Its
# augmentation is torchvision's SSD-style chain: photometric distortion (p 0.5), zoom out, IoU crop (p 0.8),
# horizontal flip; cvzoo's "ssd" preset has the same four parts. The paper's batch is 16 (4 GPUs x 4).
RTDETR_RECIPE: dict[str, Any] = {
    # Unused by RT-DETR, which resizes every image to its fixed size itself; a multiple of 32 keeps the
    # detection config's check of data.img_size (written for letterboxing detectors) satisfied.
    "data.img_size": 640,
    "data.batch_size": 4,
    "optim.name": "adamw",
    "optim.lr": 1e-4,
    "optim.backbone_lr_mult": 0.1,
    "optim.weight_decay": 1e-4,
    "optim.betas": (0.9, 0.999),
    "train.clip_grad_norm": 0.1,
    "train.epochs": 72,
    "train.ema": True,
    "train.nominal_batch_size": 0,
    "scheduler.name": "constant",
    "scheduler.warmup_epochs": 1.0,
    "scheduler.warmup_start_factor": 0.001,
    **SSD_AUGMENT_OFF,
    "detect.augment.photometric": 0.5,
    "detect.augment.zoom_out": 0.5,
    "detect.augment.iou_crop": 0.8,
    "detect.augment.hflip": 0.5,
}


class RTDETR(OnePassDetector):
    """RT-DETR with a ResNet-vd backbone.

    Args:
        num_classes: object classes ``K`` (80 for COCO).
        backbone: ``resnet18_vd``, ``resnet34_vd``, ``resnet50_vd`` or ``resnet101_vd``.
        frozen_batch_norm: freeze the backbone's batch norms; None: for a model that starts from trained
            weights (``fine_tune``), as RT-DETR does with its ImageNet backbones; a model trained from scratch
            keeps them live.
        fine_tune: the weights will be loaded from a trained checkpoint (``create_model(..., weights=)`` sets it).
        hidden_dim: width of the encoder and decoder (256).
        num_heads: attention heads of AIFI and the decoder (8).
        encoder_ffn_dim, encoder_layers: AIFI's FFN width (1024) and depth (1).
        expansion: hidden width ratio of CCFM's fusion blocks (1.0; 0.5 for R18).
        num_blocks: RepVGG blocks per fusion block (3).
        decoder_layers: (6; 3 for R18).
        decoder_ffn_dim: (1024).
        num_points: deformable sampling points per head and level (4), or one number per level (RT-DETRv2).
        offset_scale: the deformable offsets' unit in box sizes (0.5; a setting in RT-DETRv2).
        sampling: ``"default"`` (bilinear) or ``"discrete"`` (RT-DETRv2's one-cell sampling, no ``grid_sample``).
        num_queries: queries ``N`` selected from the encoder (300), the most objects an image can hold.
        num_denoising: the denoising-query budget in training (100; 0 turns denoising off).
        label_noise_ratio, box_noise_scale: denoising noise (0.5, 1.0).
        dropout: in the transformer layers (0).
        aux_loss: add the losses of every decoder layer, the encoder's proposals and the denoising queries.
        size: the fixed ``(height, width)`` images are resized to; multiples of 32.
        score_thresh: the score above which a detection is kept by ``predict`` (validation keeps all).
        detections_per_img: the top scores kept per image (300).
        in_channels: image channels.
    """

    input_policy: ClassVar[InputPolicy] = InputPolicy("model", size_divisible=1)
    loss_reduction: ClassVar[str] = "mean"  # type: ignore[assignment]
    default_recipe: ClassVar[dict[str, Any]] = RTDETR_RECIPE
    recipe_name: ClassVar[str] = "RT-DETR (Zhao et al. 2024)"
    exportable: ClassVar[bool] = True
    augment_keys: ClassVar[tuple[str, ...]] = SSD_AUGMENT_KEYS
    validation_settings: ClassVar[dict[str, Any]] = {"conf_threshold": 0.0}

    def __init__(
        self,
        num_classes: int = 80,
        backbone: str = "resnet50_vd",
        frozen_batch_norm: bool | None = None,
        fine_tune: bool = False,
        hidden_dim: int = 256,
        num_heads: int = 8,
        encoder_ffn_dim: int = 1024,
        encoder_layers: int = 1,
        expansion: float = 1.0,
        num_blocks: int = 3,
        decoder_layers: int = 6,
        decoder_ffn_dim: int = 1024,
        num_points: int | Sequence[int] = 4,
        offset_scale: float = 0.5,
        sampling: str = "default",
        num_queries: int = 300,
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        dropout: float = 0.0,
        aux_loss: bool = True,
        size: int | Sequence[int] = 640,
        score_thresh: float = 0.5,
        detections_per_img: int = 300,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.size = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if any(side % 32 for side in self.size):
            raise ValueError(f"RT-DETR's size must be multiples of 32 (its maps at strides 8-32 are fused by x2 "
                             f"resampling), got {self.size}")
        self.num_classes = num_classes
        self.num_queries, self.num_denoising = num_queries, num_denoising
        self.label_noise_ratio, self.box_noise_scale = label_noise_ratio, box_noise_scale
        self.aux_loss = aux_loss
        frozen_batch_norm = fine_tune if frozen_batch_norm is None else frozen_batch_norm
        # RT-DETR feeds [0, 1] pixels: the transform's normalisation is the identity.
        self.transform = DetectorTransform(min(self.size), max(self.size), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0),
                                           size_divisible=1, fixed_size=self.size)
        self.backbone = resnet_vd(backbone, frozen_batch_norm, in_channels)
        levels = len(self.backbone.out_channels)
        self.encoder = HybridEncoder(self.backbone.out_channels, hidden_dim, num_heads, encoder_ffn_dim, dropout,
                                     encoder_layers, (levels - 1,), num_blocks, expansion)
        self.decoder_input_proj = nn.ModuleList(ConvNormAct(hidden_dim, hidden_dim, 1, act_layer=None)
                                                for _ in range(levels))
        # Query selection's heads over every encoder token (sec. 4.3).
        self.enc_output = nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.LayerNorm(hidden_dim))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = BoxHead(hidden_dim, hidden_dim, 4, 3)
        self.decoder = Decoder(num_classes, hidden_dim, num_heads, decoder_ffn_dim, dropout, decoder_layers, levels,
                               num_points, offset_scale, sampling)
        # The "no object" row (index K) pads the denoising groups of images with fewer objects.
        self.denoising_class_embed = (nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes)
                                      if num_denoising > 0 else None)
        self.criterion = RTDETRCriterion(num_classes)
        self.detect_settings = DetectSettings(score_thresh, 1.0, detections_per_img)
        self._reset_heads()

    @torch.no_grad()
    def _reset_heads(self) -> None:
        """RT-DETR's start: class biases at the prior probability 0.01 (Lin et al. 2017, sec. 4.1: the focal
        loss of the many negatives does not swamp the first iterations), box corrections at (nearly) zero (a
        layer first passes its reference on), Glorot class weights. RT-DETR zeroes the box heads' last layer
        outright; its weight starts here at N(0, 1e-4) instead, which moves the first boxes by ~1e-4 but lets
        the gradient reach the heads' hidden layers from the first step (a zero weight blocks it until the
        first update)."""
        prior = -torch.log(torch.tensor((1 - 0.01) / 0.01)).item()
        for head in [self.enc_score_head, *self.decoder.class_heads]:
            nn.init.xavier_uniform_(head.weight)
            nn.init.constant_(head.bias, prior)
        for box_head in [self.enc_bbox_head, *self.decoder.box_heads]:
            nn.init.normal_(box_head.layers[-1].weight, std=1e-4)
            nn.init.zeros_(box_head.layers[-1].bias)

    # ----------------------------------------------------------------------------------------- network

    def forward_network(self, batch: torch.Tensor, targets: Sequence[Target] | None = None) -> dict[str, Any]:
        """The network on a batch of resized images (transformers' ``pixel_values``).

        Args:
            batch: ``[B, 3, H, W]`` pixels in [0, 1].
            targets: normalised ``cxcywh`` targets; in training with ``num_denoising > 0`` they give the
                denoising queries.

        Returns:
            ``logits [L, B, N, K]`` and ``boxes [L, B, N, 4]`` (normalised cxcywh) of every decoder layer,
            ``enc_logits [B, N, K]`` / ``enc_boxes [B, N, 4]`` of the selected proposals, and ``denoising``:
            ``(logits [L, B, D, K], boxes [L, B, D, 4], DenoisingGroups)`` or None.
        """
        maps = self.encoder(self.backbone(batch))
        sources = [proj(m) for proj, m in zip(self.decoder_input_proj, maps)]
        shapes = [(int(s.shape[-2]), int(s.shape[-1])) for s in sources]
        memory = torch.cat([s.flatten(2).transpose(1, 2) for s in sources], dim=1)
        if memory.shape[1] < self.num_queries:
            raise ValueError(f"RT-DETR selects {self.num_queries} queries (num_queries) from {memory.shape[1]} "
                             f"encoder tokens at {tuple(batch.shape[-2:])} pixels: raise size or lower num_queries")
        # IoU-aware query selection: score every token (invalid anchors zeroed), keep the top N.
        anchors, valid = make_anchors(shapes, device=memory.device, dtype=memory.dtype)
        features = self.enc_output(valid.to(memory.dtype) * memory)
        token_logits = self.enc_score_head(features)
        token_boxes = self.enc_bbox_head(features) + anchors
        top = token_logits.max(-1).values.topk(self.num_queries, dim=1).indices

        def gather(x: torch.Tensor) -> torch.Tensor:
            return x.gather(1, top[..., None].expand(-1, -1, x.shape[-1]))

        reference = gather(token_boxes)
        enc_logits, enc_boxes = gather(token_logits), reference.sigmoid()
        queries = gather(features).detach()
        groups: DenoisingGroups | None = None
        if self.training and targets is not None and self.denoising_class_embed is not None:
            groups = denoising_groups(targets, self.denoising_class_embed, self.num_classes, self.num_queries,
                                      self.num_denoising, self.label_noise_ratio, self.box_noise_scale)
        if groups is not None:
            queries = torch.cat((groups.queries, queries), dim=1)
            reference = torch.cat((groups.reference_logits, reference), dim=1)
        logits, boxes = self.decoder(queries, reference.detach(), memory, shapes,
                                     None if groups is None else groups.attn_mask)
        denoising = None
        if groups is not None:
            d = groups.num_queries
            denoising = (logits[:, :, :d], boxes[:, :, :d], groups)
            logits, boxes = logits[:, :, d:], boxes[:, :, d:]
        return {"logits": logits, "boxes": boxes, "enc_logits": enc_logits, "enc_boxes": enc_boxes,
                "denoising": denoising}

    # ------------------------------------------------------------------------------------- entry points

    def _run(self, images: torch.Tensor, image_sizes: Sequence[tuple[int, int]] | None,
             targets: Sequence[Target] | None, settings: DetectSettings | None
             ) -> tuple[dict[str, torch.Tensor], list[Detections]]:
        sizes, crops = self.image_crops(images, image_sizes)
        batch, _, _ = self.transform(crops)
        normalized = None if targets is None else [normalized_target(t, size, batch.device)
                                                   for t, size in zip(targets, sizes)]
        out = self.forward_network(batch, normalized)
        losses: dict[str, torch.Tensor] = {}
        if normalized is not None:
            if self.aux_loss:
                losses = self.criterion(out["logits"], out["boxes"], normalized, (out["enc_logits"], out["enc_boxes"]),
                                        out["denoising"])
            else:
                losses = self.criterion(out["logits"][-1:], out["boxes"][-1:], normalized)
        detections = [] if settings is None else self.decode(out["logits"][-1], out["boxes"][-1], sizes, settings)
        return losses, detections

    def settings(self, conf_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int | None = None, classes: Sequence[int] | None = None,
                 soft_nms: str | None = None, agnostic: bool = False) -> DetectSettings:
        """The inference settings, the model's own where an argument is None; the NMS settings are errors:
        RT-DETR has no NMS."""
        if iou_threshold is not None or soft_nms or agnostic:
            raise ValueError(f"RT-DETR predicts without NMS: iou_threshold={iou_threshold}, soft_nms={soft_nms}, "
                             f"agnostic={agnostic} do not apply (leave them unset)")
        return super().settings(conf_threshold, None, max_detections, classes)

    def decode(self, logits: torch.Tensor, boxes: torch.Tensor, sizes: Sequence[tuple[Any, Any]],
               settings: DetectSettings) -> list[Detections]:
        """``logits [B, N, K]`` and ``boxes [B, N, 4]`` (normalised cxcywh) -> detections in the pixels of each
        image (``sizes``: ``(H, W)``, ints or traced 0-d tensors): the top ``detections_per_img`` of the
        ``N K`` (query, class) scores above the threshold, by decreasing score; no NMS."""
        classes = logits.shape[-1]
        scores = logits.sigmoid()
        if settings.classes is not None:
            keep = torch.zeros(classes, dtype=torch.bool, device=logits.device)
            keep[list(settings.classes)] = True
            scores = scores * keep
        scores = scores.flatten(1)
        top_scores, top = scores.topk(min(settings.detections_per_img, scores.shape[1]), dim=1)
        results = []
        for image_scores, index, image_boxes, (height, width) in zip(top_scores, top, boxes, sizes):
            scale = torch.stack([torch.as_tensor(v, dtype=torch.float32, device=boxes.device)
                                 for v in (width, height, width, height)])
            pixels = box_convert(image_boxes[index // classes], "cxcywh", "xyxy") * scale
            detections = Detections(pixels, image_scores, index % classes)
            results.append(detections.select(image_scores > settings.score_thresh))
        return results

    def export_module(self) -> nn.Module:
        """One image ``[1, 3, H, W]`` (any size, [0, 1]) -> its detections with the model's score threshold
        (``boxes``, ``scores``, ``labels``; :class:`~cvzoo.models.detection.rcnn.faster_rcnn.RCNNExport`)."""
        return RCNNExport(self)


_DETECT = {"task": "detect", "input_size": (3, 640, 640)}
# The R18 model: ResNet-18-vd, CCFM at half width inside its fusion blocks, 3 decoder layers (its config).
register_model("rtdetr_r18vd", RTDETR, backbone="resnet18_vd", expansion=0.5, decoder_layers=3,
               reference="transformers:PekingU/rtdetr_r18vd", **_DETECT)
register_model("rtdetr_r50vd", RTDETR, backbone="resnet50_vd", reference="transformers:PekingU/rtdetr_r50vd",
               **_DETECT)
# RT-DETRv2 (Lv et al. 2024, "RT-DETRv2: Improved Baseline with Bag-of-Freebies") keeps this network at its
# defaults (4 points on each of 3 levels, bilinear sampling, offsets at half the box over P: transformers'
# RTDetrV2ForObjectDetection computes the same function), so its checkpoints load into the names above through
# the same remap; its sampling settings are keyword arguments: points per level (``num_points=(4, 4, 4)``),
# ``offset_scale``, and ``sampling="discrete"`` for runtimes without grid_sample (inference: one-cell sampling
# gives the offsets no gradient).
# A reduced RT-DETR that trains on a CPU: ResNet-18-vd, a 64-wide encoder and decoder with 4 heads, one
# RepVGG block per fusion block, 2 decoder layers, 30 queries, 20 denoising queries, images at 320 (the
# synthetic scenes' size). The architecture is RT-DETR's.
register_model("rtdetr_r18vd_tiny", RTDETR, backbone="resnet18_vd", hidden_dim=64, num_heads=4, encoder_ffn_dim=128,
               expansion=0.5, num_blocks=1, decoder_layers=2, decoder_ffn_dim=128, num_queries=30, num_denoising=20,
               size=320, task="detect", input_size=(3, 320, 320))
