"""DETR's backbone: a registered ResNet's last stage (C5, stride 32; 16 for the DC5 models) and the
padding mask at its resolution.

Carion et al. 2020 (sec. 3.2) take the ImageNet-trained ResNet's final map; the DC5 models (sec. 4,
"Technical details") dilate the last stage and drop its stride, doubling the map's resolution. A model
fine-tuned from trained weights keeps the batch statistics frozen and the stem and ``layer1`` fixed, as
DETR's code does; one trained from scratch trains every stage with live batch norms (frozen identity norms
would let an untrained deep network blow up).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvzoo.layers import freeze_batch_norm
from cvzoo.models.backbones import create_backbone
from cvzoo.models.classification.resnet import ResNet
from cvzoo.models.detection.fpn_backbone import drop_classifier, feature_stages, freeze_stages, resnet_stages


class LastStageBackbone(nn.Module):
    """``body`` (a classifier without its head) -> its last feature map ``[B, C5, H / s, W / s]``.

    Args:
        name: a registered classifier (``resnet50``, ``resnet101``, ``resnet18``, ...).
        weights: local classifier checkpoint (loaded by name and shape, the head skipped).
        dilation: dilate the last stage instead of striding it (DC5: output stride 16).
        trainable_layers: stages that train, counted from the last (ResNet: 0..5).
        frozen_batch_norm: replace the batch norms by frozen ones.
        in_channels: image channels.

    Attributes:
        out_channels: channels of the map.
        stride: its stride.
    """

    def __init__(self, name: str = "resnet50", weights: str | None = None, dilation: bool = False,
                 trainable_layers: int = 3, frozen_batch_norm: bool = True, in_channels: int = 3) -> None:
        super().__init__()
        body = create_backbone(name, in_channels, weights, output_stride=16 if dilation else 32)
        drop_classifier(body)
        freeze_stages(body, resnet_stages(body) if isinstance(body, ResNet) else feature_stages(body), trainable_layers)
        if frozen_batch_norm:
            freeze_batch_norm(body)
        self.body = body
        self.out_channels = body.feature_info[-1].channels
        self.stride = body.feature_info[-1].reduction

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body.forward_features(images)[-1]


def feature_mask(pixel_mask: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """``[B, H, W]`` bool (True inside each image) -> the same at a feature map's ``size``, by nearest
    sampling (DETR's rule: a cell is valid when the pixel at its top-left sample point is)."""
    return F.interpolate(pixel_mask[None].float(), size=tuple(size)).to(torch.bool)[0]


def pixel_mask(batch: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """The ``[B, H, W]`` bool mask of each image's ``(height, width)`` inside the padded ``batch``."""
    height, width = batch.shape[-2:]
    rows = torch.arange(height, device=batch.device)
    columns = torch.arange(width, device=batch.device)
    return torch.stack([(rows[:, None] < h) & (columns[None, :] < w) for h, w in sizes])
