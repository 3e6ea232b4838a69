"""Detector backbones: a registered classifier's stage maps + a Feature Pyramid Network (Lin et al. 2017).

ResNets (and any registered classifier with stages at strides 4..32) give C2..C5, which the FPN turns into
P2..P5 plus P6 (a stride-2 subsample of P5, "pool"), all with 256 channels; the RPN sees P2..P6 and the
RoI heads pool from P2..P5. The one-stage detectors (RetinaNet, FCOS) tap C3..C5 only and add P6/P7 by
two stride-2 convs (``strides=(8, 16, 32)``, ``extra_block="p6p7"`` or ``"p6p7_c5"``). MobileNet v3 gives the two maps torchvision's mobile detectors use: the output
of the last strided block and of the final 1x1 conv (both stride 32), pyramid "P5a, P5b" plus the pool.

Fine-tuning a detector from a pretrained backbone freezes its first stages (``trainable_layers``: how
many stages, counted from the last, keep training) and, in the v1 recipe, its batch norms
(:class:`~cvzoo.layers.FrozenBatchNorm2d`): detection batches are too small for batch statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cvzoo.layers import freeze_batch_norm
from cvzoo.models.backbones import create_backbone
from cvzoo.models.classification.mobilenet_v3 import MobileNetV3
from cvzoo.models.classification.resnet import ResNet
from cvzoo.models.detection.darknet import stride_indices
from cvzoo.models.necks import FeaturePyramidNetwork

FPN_STRIDES = (4, 8, 16, 32)


@dataclass(frozen=True)
class StageTaps:
    """The classifier's ``forward_features`` maps at ``indices`` (positions in its ``feature_info``)."""

    indices: tuple[int, ...]

    def __call__(self, body: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        features = body.forward_features(images)
        return [features[i] for i in self.indices]


@dataclass(frozen=True)
class MobileNetV3Taps:
    """MobileNet v3's output of ``blocks[block]`` (the last strided block) and of ``head_conv``."""

    block: int

    def __call__(self, body: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
        x = body.stem(images)
        tapped = []
        for index, block in enumerate(body.blocks):
            x = block(x)
            if index == self.block:
                tapped.append(x)
        return [*tapped, body.head_conv(x)]


class FPNBackbone(nn.Module):
    """``body`` (a classifier without its head) -> maps picked by ``taps`` -> FPN with the "pool" level.

    Args:
        body: the classifier (its modules are the state dict's ``body.*``).
        taps: ``(body, images) -> maps finest first`` (:class:`StageTaps`, :class:`MobileNetV3Taps`).
        in_channels: channels of the tapped maps.
        out_channels: FPN width (256).
        norm_layer: norm of the FPN convs (the v2 recipe's batch norm), or None.
        extra_block: the FPN's extra levels (:class:`~cvzoo.models.necks.FeaturePyramidNetwork`).

    Attributes:
        out_channels: channels of every output level.
        num_pooled_levels: the levels the RoI heads pool from (all but the extra levels).
    """

    def __init__(self, body: nn.Module, taps: StageTaps | MobileNetV3Taps, in_channels: Sequence[int],
                 out_channels: int = 256, norm_layer: type[nn.Module] | None = None,
                 extra_block: str = "pool") -> None:
        super().__init__()
        self.body = body
        self.taps = taps
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_block=extra_block, norm_layer=norm_layer)
        self.out_channels = out_channels
        self.num_pooled_levels = len(in_channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[B, 3, H, W]`` -> levels ``[B, out_channels, H_l, W_l]``, finest first, the extra levels last."""
        return self.fpn(self.taps(self.body, images))


def drop_classifier(model: nn.Module) -> None:
    """Remove the classification head so that no unused parameter remains (a detector's gradients must
    reach every trainable parameter)."""
    model.reset_classifier(0)
    if isinstance(getattr(model, "pre_logits", None), nn.Module):
        model.pre_logits = nn.Identity()


def resnet_stages(model: ResNet) -> list[tuple[str, ...]]:
    """Module-name prefixes of a ResNet's stages, input first: the stem, then ``layer1`` .. ``layer4``."""
    return [("conv1.", "bn1."), ("layer1.",), ("layer2.",), ("layer3.",), ("layer4.",)]


def strided_blocks(model: MobileNetV3) -> list[int]:
    """Indices of the MobileNet v3 blocks whose depthwise conv has stride 2."""
    return [i for i, block in enumerate(model.blocks) if block.depthwise.conv.stride[0] > 1]


def mobilenet_v3_stages(model: MobileNetV3) -> list[tuple[str, ...]]:
    """Module-name prefixes of MobileNet v3's stages: each strided block starts one (torchvision's split),
    the stem opens the first, ``head_conv`` is the last."""
    starts = [0] + strided_blocks(model)
    owners = ["stem."] + [f"blocks.{i}." for i in range(len(model.blocks))]  # owners[k]: torchvision's features[k]
    bounds = [0] + [s + 1 for s in starts[1:]] + [len(owners)]
    return [tuple(owners[a:b]) for a, b in zip(bounds, bounds[1:])] + [("head_conv.",)]


def feature_stages(model: nn.Module) -> list[tuple[str, ...]]:
    """Another classifier's stages: the modules named in its ``feature_info``."""
    return [(info.module + ".",) for info in model.feature_info]


def freeze_stages(model: nn.Module, stages: Sequence[tuple[str, ...]], trainable_layers: int) -> None:
    """Stop the gradients of every parameter outside the last ``trainable_layers`` stages (all train when
    ``trainable_layers >= len(stages)``)."""
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(f"trainable_backbone_layers must be in [0, {len(stages)}], got {trainable_layers}")
    if trainable_layers == len(stages):
        return
    trainable = tuple(p for stage in stages[len(stages) - trainable_layers:] for p in stage)
    for name, parameter in model.named_parameters():
        if not name.startswith(trainable):
            parameter.requires_grad_(False)


def fpn_backbone(
    name: str = "resnet50",
    weights: str | None = None,
    trainable_layers: int = 3,
    frozen_batch_norm: bool = True,
    fpn_norm: type[nn.Module] | None = None,
    in_channels: int = 3,
    strides: Sequence[int] = FPN_STRIDES,
    extra_block: str = "pool",
) -> FPNBackbone:
    """The registered classifier ``name`` with an FPN, as torchvision's ``_resnet_fpn_extractor`` /
    ``_mobilenet_extractor(fpn=True)`` build it.

    Args:
        name: a registered classifier (``resnet50``, ``mobilenet_v3_large``, ``resnet18``, ...).
        weights: local checkpoint of the classifier (loaded by name and shape, the head skipped).
        trainable_layers: stages that train, counted from the last (ResNet: 0..5, 3 = ``layer2``..``layer4``;
            MobileNet v3: 0..6).
        frozen_batch_norm: replace the classifier's batch norms by frozen ones (v1 models).
        fpn_norm: norm in the FPN (v2: ``nn.BatchNorm2d``), or None.
        in_channels: image channels.
        strides: the strides of the classifier's maps the FPN takes (ResNet-like classifiers; R-CNN: 4..32
            = C2..C5, RetinaNet / FCOS: 8..32 = C3..C5, torchvision's ``returned_layers=[2, 3, 4]``).
        extra_block: the FPN's extra levels: ``"pool"`` (R-CNN), ``"p6p7"`` / ``"p6p7_c5"`` (RetinaNet, FCOS).
    """
    model = create_backbone(name, in_channels, weights)
    drop_classifier(model)
    if isinstance(model, MobileNetV3):
        if tuple(strides) != FPN_STRIDES:
            raise ValueError(f"fpn_backbone: MobileNet v3 taps its two stride-32 maps; strides={tuple(strides)} "
                             "applies to ResNet-like classifiers only")
        last_strided = strided_blocks(model)[-1]
        taps: StageTaps | MobileNetV3Taps = MobileNetV3Taps(last_strided)
        channels = [model.blocks[last_strided].project.out_channels, model.head_conv.out_channels]
        stages = mobilenet_v3_stages(model)
    else:
        indices = tuple(stride_indices(model.feature_info, tuple(strides), name))
        taps = StageTaps(indices)
        channels = [model.feature_info[i].channels for i in indices]
        stages = resnet_stages(model) if isinstance(model, ResNet) else feature_stages(model)
    freeze_stages(model, stages, trainable_layers)
    if frozen_batch_norm:
        freeze_batch_norm(model)
    return FPNBackbone(model, taps, channels, 256, fpn_norm, extra_block)
