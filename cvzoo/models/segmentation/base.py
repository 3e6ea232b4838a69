"""What every segmenter shares: the output contract, backbones by name, the small heads, bilinear init.

Contract (DESIGN.md): ``forward(images [B, 3, H, W]) -> {"out": [B, K, H, W], "aux": [B, K, H, W]?}``,
logits at the input resolution, identical in train and eval mode (the auxiliary head, when built, is
always computed, so a traced or exported graph does not depend on the mode). ``loss`` applies the
model's ``criterion`` (cross-entropy with the 255 "void" label ignored unless the segment task sets
another) to each output and adds the weighted auxiliary loss; ``postprocess`` turns logits into class
maps at each image's original size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers.conv_norm_act import ConvNormAct
from cvzoo.losses.segmentation import SegmentationLoss
from cvzoo.models.backbones import create_backbone
from cvzoo.models.features import FeatureExtractor, FeatureInfo
from cvzoo.models.weights import StateDict

logger = logging.getLogger(__name__)

IGNORE_INDEX = 255


class Segmenter(nn.Module):
    """Base class of the semantic segmentation models (subclasses implement ``forward``)."""

    num_classes: int

    # The pixel-wise criterion of ``loss``; the segment task replaces it by the configured one
    # (``segment.loss``, class weights...). A plain value, so it is not part of the state dict.
    criterion: SegmentationLoss = SegmentationLoss(ignore_index=IGNORE_INDEX)

    def loss(self, outputs: dict[str, torch.Tensor], targets: torch.Tensor,
             aux_weight: float = 0.3) -> dict[str, torch.Tensor]:
        """``criterion`` of the outputs against ``targets [B, H, W]`` (int64, 255 = ignore).

        Returns:
            ``{"loss"}``; with an auxiliary output also ``"loss_main"`` and ``"loss_aux"``, and
            ``loss = loss_main + aux_weight * loss_aux``.
        """
        main = self.criterion(outputs["out"], targets)
        if "aux" not in outputs:
            return {"loss": main}
        aux = self.criterion(outputs["aux"], targets)
        return {"loss": main + aux_weight * aux, "loss_main": main.detach(), "loss_aux": aux.detach()}

    @torch.no_grad()
    def postprocess(self, outputs: dict[str, torch.Tensor], image_sizes: Sequence[tuple[int, int]]) -> list[torch.Tensor]:
        """Class maps ``[H_i, W_i]`` (int64) resized back to each image's ``(height, width)``."""
        logits = outputs["out"]
        if len(image_sizes) != logits.shape[0]:
            raise ValueError(f"{len(image_sizes)} image sizes for a batch of {logits.shape[0]}")
        maps = []
        for i, (height, width) in enumerate(image_sizes):
            item = logits[i : i + 1].float()
            if tuple(item.shape[-2:]) != (int(height), int(width)):
                item = F.interpolate(item, size=(int(height), int(width)), mode="bilinear", align_corners=False)
            maps.append(item.argmax(1)[0])
        return maps


def upsample_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear resize of ``[B, C, h, w]`` logits to ``size`` (no-op when already that size)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------------------------- backbones
# Classifier parts that ``forward_features`` never runs: dropped from a backbone so that they neither
# hold parameters nor show up as missing keys when a segmentation checkpoint is loaded.
HEAD_MODULES = ("pre_logits", "classifier", "fc", "head")


def feature_backbone(
    name: str,
    output_stride: int = 32,
    in_channels: int = 3,
    weights: str | None = None,
    keep_head: bool = False,
    **model_kwargs: Any,
) -> FeatureExtractor:
    """A registered classifier as a features-only backbone (every stage of ``feature_info``); see
    ``cvzoo.models.backbones.create_backbone`` for the arguments. ``keep_head`` keeps the classifier's
    head modules (FCN reuses VGG's fully connected layers)."""
    extractor = FeatureExtractor(create_backbone(name, in_channels, weights, output_stride, **model_kwargs))
    if not keep_head:
        drop_head(extractor)
    return extractor


def drop_head(extractor: FeatureExtractor) -> None:
    """Replace the wrapped classifier's ``HEAD_MODULES`` (those no stage lives in) by identities."""
    stage_modules = {info.module.split(".")[0] for info in extractor.feature_info}
    for attr in HEAD_MODULES:
        if attr not in stage_modules and isinstance(getattr(extractor.body, attr, None), nn.Module):
            setattr(extractor.body, attr, nn.Identity())


def stage_index(infos: Sequence[FeatureInfo], reduction: int, where: str) -> int:
    """Index of the last stage whose stride is ``reduction`` (the deepest map at that resolution)."""
    matches = [i for i, info in enumerate(infos) if info.reduction == reduction]
    if not matches:
        strides = [info.reduction for info in infos]
        raise ValueError(f"{where}: the backbone has no stage at stride {reduction} (strides {strides})")
    return matches[-1]


# ------------------------------------------------------------------------------------------------ heads
class FCNHead(nn.Module):
    """3x3 conv to ``in_channels // 4`` + BN + ReLU, dropout, 1x1 classifier (torchvision's FCN head).

    Also the auxiliary head of FCN / DeepLab v3 on ResNet's layer3 (the PSPNet deep-supervision idea,
    Zhao et al., 2017, §3.3).
    """

    def __init__(self, in_channels: int, num_classes: int, hidden_channels: int | None = None,
                 dropout: float = 0.1) -> None:
        super().__init__()
        hidden = hidden_channels or in_channels // 4
        self.block = ConvNormAct(in_channels, hidden, 3)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(hidden, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.block(x)))


def bilinear_kernel(channels: int, factor: int) -> torch.Tensor:
    """``[C, C, 2f, 2f]`` weights that make ``ConvTranspose2d(C, C, 2f, stride=f, padding=f // 2)`` upsample
    each channel bilinearly by ``f`` (Long et al., 2015, §3.3: "initialized to bilinear interpolation").

    The 1-D tent ``1 - |x - c| / f`` over ``2f`` taps (centre ``c = f - 0.5``), outer-multiplied, sits on
    the diagonal (channel ``i`` -> ``i``); away from the borders the result equals
    ``F.interpolate(mode="bilinear", align_corners=False)``.
    """
    size = 2 * factor
    centre = factor - 0.5
    taps = 1.0 - (torch.arange(size, dtype=torch.float64) - centre).abs() / factor
    kernel = (taps[:, None] * taps[None, :]).float()
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = kernel
    return weight


def bilinear_upsampler(channels: int, factor: int, learnable: bool = True) -> nn.ConvTranspose2d:
    """A transposed conv initialised as bilinear upsampling by ``factor``; output size = input x factor."""
    if factor < 2 or factor % 2:
        raise ValueError(f"bilinear upsampling factor must be an even integer >= 2, got {factor}")
    layer = nn.ConvTranspose2d(channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(bilinear_kernel(channels, factor))
    layer.weight.requires_grad_(learnable)
    return layer


# ------------------------------------------------------------------------------------- state-dict keys
def rename_prefixes(state: StateDict, table: dict[str, str]) -> StateDict:
    """Rename keys by their longest matching prefix in ``table``; keys without a match are kept."""
    out: StateDict = {}
    prefixes = sorted(table, key=len, reverse=True)
    for key, value in state.items():
        for prefix in prefixes:
            if key == prefix or key.startswith(prefix + "."):
                key = table[prefix] + key[len(prefix):]
                break
        out[key] = value
    return out


__all__ = [
    "FCNHead", "IGNORE_INDEX", "Segmenter", "bilinear_kernel", "bilinear_upsampler", "drop_head", "feature_backbone",
    "rename_prefixes", "stage_index", "upsample_to",
]
