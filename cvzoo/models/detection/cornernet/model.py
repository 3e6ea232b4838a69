"""CornerNet (Law & Deng, "CornerNet: Detecting Objects as Paired Keypoints", ECCV 2018).

An object is a pair of keypoints, its top-left and bottom-right corners: a stacked hourglass predicts,
for each corner type, a heatmap per class, an embedding that groups the two corners of one object, and a
sub-pixel offset. No anchor boxes. Training targets / loss / decoding are in ``targets.py``, ``loss.py``
and ``decode.py``; the backbone in ``hourglass.py``; the prediction modules in ``heads.py``.

Variants: ``cornernet_hourglass104`` is the paper's model (hourglass-104, two stacks, ~201M parameters);
``cornernet`` is a reduced hourglass (3 levels, narrow, one stack) that trains on a CPU in minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from cvzoo.models.detection.base import InputPolicy, validate_targets
from cvzoo.models.detection.cornernet.candidates import corner_pair_candidates
from cvzoo.models.detection.cornernet.decode import decode_corners
from cvzoo.models.detection.cornernet.heads import CornerHead
from cvzoo.models.detection.cornernet.hourglass import StackedHourglass
from cvzoo.models.detection.cornernet.loss import CornerNetLoss
from cvzoo.models.detection.cornernet.targets import corner_targets
from cvzoo.models.detection.dense import DecodedDetector, DenseDetector
from cvzoo.models.detection.export_check import TIE_TOLERANCE, decoded_rows_difference

OUTPUT_STRIDE = 4
MAP_NAMES = ("tl_heatmap", "br_heatmap", "tl_embedding", "br_embedding", "tl_offset", "br_offset")
# The ImageNet statistics: CornerNet normalises its inputs with its dataset's mean and std.
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# The paper trains hourglass-104 with Adam at 2.5e-4, batch 49, 500k iterations at 511 x 511 with
# random crops/scales, colour jitter and flips. The reduced model's recipe keeps Adam (AdamW here) and the
# same augmentation kinds, as the detection task provides them: horizontal flip, YOLO's HSV jitter and
# random affine zoom/translation (standing in for the random crop and scale), no mosaic (not part of the
# paper). A higher lr with a cosine decay and a short warm-up trains the small model from scratch in
# minutes on a CPU on the synthetic scenes. The image size is each variant's registered input size
# (cornernet 128 px letterboxed squares -> 32 x 32 corner maps; cornernet_hourglass104 512).
CORNERNET_RECIPE: dict[str, Any] = {
    "data.batch_size": 8, "optim.name": "adamw", "optim.lr": 1e-3,
    "optim.weight_decay": 1e-4, "scheduler.name": "cosine", "scheduler.warmup_epochs": 1.0,
    "train.clip_grad_norm": 10.0,
    "detect.augment.mosaic": 0.0, "detect.augment.hflip": 0.5, "detect.augment.translate": 0.1,
    "detect.augment.affine_scale": 0.3,
}


class CornerNet(DenseDetector):
    """CornerNet on a stacked hourglass.

    ``raw_outputs`` returns the last stack's maps ``{"tl_heatmap": [B, C, H/4, W/4], "br_heatmap",
    "tl_embedding": [B, D, H/4, W/4], "br_embedding", "tl_offset": [B, 2, H/4, W/4], "br_offset"}`` and,
    in training, the earlier stacks' maps as ``"<name>.<stack>"`` (intermediate supervision; at test time
    only the last stack predicts, as in the paper). ``decode`` pairs the corners into ``[B, K^2, 4 + C]``.

    Args:
        num_classes: ``C`` (80 for COCO).
        channels, modules: hourglass widths / residual blocks per level (``levels + 1`` entries).
        num_stacks: stacked hourglasses (2 in the paper).
        stem_channels: the 7x7 stem conv's channels (128).
        feature_channels: width of each stack's output (256).
        pool_channels: corner pooling branches' width (128).
        head_channels: hidden width of the heatmap / embedding / offset branches (256).
        embedding_dim: 1 in the paper.
        top_k: corners kept per type when decoding (100).
        max_embedding_distance: pairs whose embeddings are farther apart are rejected (0.5).
        min_overlap: the IoU ``t`` that sets the Gaussians' radii (0.3).
        loss_options: keyword arguments of :class:`CornerNetLoss` (weights, alpha, beta, margin).
        in_channels: image channels.
    """

    # Letterboxed squares, as YOLO: the corner maps need the whole image at one fixed stride, and a
    # square of a fixed side keeps every hourglass level an exact 2x (sides multiples of 4 * 2^levels) and
    # the batch shape fixed for the heatmap targets; the paper also trains on fixed 511 x 511 crops.
    # size_divisible is hourglass-104's 4 * 2^5; ``strides`` gives each model's own.
    input_policy: ClassVar[InputPolicy] = InputPolicy("letterbox", size_divisible=128)
    loss_reduction: ClassVar[Literal["mean", "sum"]] = "mean"
    default_recipe: ClassVar[dict[str, Any]] = CORNERNET_RECIPE
    recipe_name: ClassVar[str] = "CornerNet (Adam, flip, colour, scale)"
    exportable: ClassVar[bool] = True
    # The paper keeps the best 100 detections of the K^2 pairs; validation keeps the low-score tail.
    validation_settings: ClassVar[dict[str, Any]] = {"conf_threshold": 0.001, "iou_threshold": 0.5,
                                                     "max_detections": 100}

    def __init__(
        self,
        num_classes: int = 80,
        channels: Sequence[int] = (256, 256, 384, 384, 384, 512),
        modules: Sequence[int] = (2, 2, 2, 2, 2, 4),
        num_stacks: int = 2,
        stem_channels: int = 128,
        feature_channels: int = 256,
        pool_channels: int = 128,
        head_channels: int = 256,
        embedding_dim: int = 1,
        top_k: int = 100,
        max_embedding_distance: float = 0.5,
        min_overlap: float = 0.3,
        loss_options: dict[str, Any] | None = None,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes, self.top_k = num_classes, top_k
        self.max_embedding_distance, self.min_overlap = max_embedding_distance, min_overlap
        self.backbone = StackedHourglass(channels, modules, num_stacks, stem_channels, feature_channels, in_channels)
        # The strides of the hourglass levels, finest (the output's 4) first: the largest is what input
        # sides must be multiples of for exact 2x levels (the task pads letterboxes and TTA passes to it).
        self.strides = tuple(OUTPUT_STRIDE * 2 ** level for level in range(self.backbone.levels + 1))
        self.tl_heads = nn.ModuleList(
            CornerHead(feature_channels, pool_channels, head_channels, num_classes, "top_left", embedding_dim)
            for _ in range(num_stacks))
        self.br_heads = nn.ModuleList(
            CornerHead(feature_channels, pool_channels, head_channels, num_classes, "bottom_right", embedding_dim)
            for _ in range(num_stacks))
        self.criterion = CornerNetLoss(**dict(loss_options or {}))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def _stack_maps(self, features: torch.Tensor, stack: int) -> dict[str, torch.Tensor]:
        tl = self.tl_heads[stack](features)
        br = self.br_heads[stack](features)
        return dict(zip(MAP_NAMES, (tl[0], br[0], tl[1], br[1], tl[2], br[2])))

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, 3, H, W]`` RGB in [0, 1] -> the corner maps (class docstring)."""
        if images.shape[1] == 3:
            images = (images - self.mean) / self.std
        features = self.backbone(images)
        outputs = self._stack_maps(features[-1], len(features) - 1)
        if self.training:
            for stack in range(len(features) - 1):
                outputs |= {f"{name}.{stack}": value for name, value in self._stack_maps(features[stack], stack).items()}
        return outputs

    def compute_loss(self, outputs: dict[str, torch.Tensor],
                     targets: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        height, width = outputs["tl_heatmap"].shape[-2:]
        image_size = (height * OUTPUT_STRIDE, width * OUTPUT_STRIDE)
        targets = validate_targets(targets, image_size, self.num_classes)
        corners = corner_targets(targets, self.num_classes, (height, width), OUTPUT_STRIDE, self.min_overlap)
        stacks = [{name: outputs[f"{name}.{stack}"] for name in MAP_NAMES}
                  for stack in range(len(self.tl_heads) - 1) if f"tl_heatmap.{stack}" in outputs]
        stacks.append({name: outputs[name] for name in MAP_NAMES})
        return self.criterion(stacks, corners)

    def decode(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, K^2, 4 + C]``: every corner pair's box (xyxy input pixels) and its one-hot score."""
        return decode_corners(*(outputs[name] for name in MAP_NAMES), stride=OUTPUT_STRIDE, k=self.top_k,
                              max_embedding_distance=self.max_embedding_distance)

    def export_candidates(self, outputs: dict[str, torch.Tensor],
                          tol: float = TIE_TOLERANCE) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, the corner pairs ``[N, 4 + C]`` a correct runtime may decode from ``outputs`` and which
        of them ``[N]`` it must (``candidates.corner_pair_candidates``; the export check)."""
        maps = [outputs[name] for name in MAP_NAMES]
        return [corner_pair_candidates(*(m[image] for m in maps), stride=OUTPUT_STRIDE, k=self.top_k,
                                       max_embedding_distance=self.max_embedding_distance, tol=tol)
                for image in range(len(maps[0]))]

    def export_module(self) -> nn.Module:
        """Images -> decoded corner pairs ``[B, K^2, 4 + C]``, checked as sets (:class:`CornerPairsExport`)."""
        return CornerPairsExport(self)


class CornerPairsExport(DecodedDetector):
    """Export wrapper: images -> decoded corner pairs ``[B, K^2, 4 + C]`` (``CornerNet.decode``).

    Its export check is :meth:`parity_difference`, not an element-wise comparison: which corners the graph
    picks depends on comparisons that near-ties let another runtime take the other way (``candidates``),
    and then every row after the first different corner moves.
    """

    @torch.no_grad()
    def parity_difference(self, images: torch.Tensor, expected: Sequence[torch.Tensor], got: Sequence[Any]) -> float:
        """How far another runtime's decoded pairs ``got`` are from a correct decoding of ``images``: each
        of its valid pairs (score > 0) matched to the nearest pair PyTorch's maps allow (box in pixels,
        score), ``inf`` when a pair every correct decoding has is missing or two share a match
        (``export_check.decoded_rows_difference``). PyTorch's ``expected`` is one such decoding; the
        candidates come from its maps, so ``expected`` itself is not needed."""
        candidates = self.model.export_candidates(self.model(images))
        return max((decoded_rows_difference(pairs, required, torch.as_tensor(rows))
                    for (pairs, required), rows in zip(candidates, got[0])), default=0.0)
