"""YOLO backbones: Darknet-53 (YOLOv3), the YOLOv3-tiny backbone and CSP-Darknet (YOLOv5 with C3 blocks,
YOLOv8 with C2f blocks), plus the wrapper that lets any registered classifier replace them.

The backbones follow the classification contract (``forward_features`` -> one map per stage,
``feature_info``, a pooled linear head that ``num_classes=0`` removes), so a detector reaches its own
backbone and a foreign one (``backbone="resnet50"``) through the same :class:`YoloBackbone`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cvzoo.models.backbones import create_backbone
from cvzoo.models.classification.base import Classifier
from cvzoo.models.detection.yolo_common import (
    C3,
    LEAKY_RELU,
    SPPF,
    Bottleneck,
    C2f,
    conv_bn_act,
    scale_depth,
    scale_width,
)
from cvzoo.models.features import FeatureExtractor, FeatureInfo
from cvzoo.models.registry import register_model
from cvzoo.models.weights import load_weights


class _StagedClassifier(Classifier):
    """Shared plumbing: stages run in order, each output is a feature map; global pool + linear head."""

    stage_names: list[str]

    def _init_head(self, num_features: int, num_classes: int) -> None:
        self.num_features, self.num_classes = num_features, num_classes
        self.fc: nn.Module = self._make_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for name in self.stage_names:
            x = getattr(self, name)(x)
            features.append(x)
        return features


class Darknet53(_StagedClassifier):
    """Darknet-53 (Redmon & Farhadi 2018, table 1): a 3x3 stem and five stages, each a stride-2 3x3 conv
    followed by 1, 2, 8, 8, 4 residual units (1x1 squeeze to half the channels, 3x3 back), LeakyReLU(0.1).

    Stages ``stem`` (stride 1, 32 channels) and ``stage1``..``stage5`` (strides 2..32, 64..1024 channels).

    Args:
        num_classes: classifier outputs (0: no head, features only).
        in_channels: image channels.
        depths: residual units per stage.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, depths: Sequence[int] = (1, 2, 8, 8, 4)) -> None:
        super().__init__()
        self.stem = conv_bn_act(in_channels, 32, 3, act_layer=LEAKY_RELU)
        self.feature_info = [FeatureInfo(32, 1, "stem")]
        self.stage_names = ["stem"]
        channels = 32
        for index, depth in enumerate(depths):
            out = channels * 2
            name = f"stage{index + 1}"
            units = [Bottleneck(out, out, True, (1, 3), 0.5, LEAKY_RELU) for _ in range(depth)]
            self.add_module(name, nn.Sequential(conv_bn_act(channels, out, 3, 2, act_layer=LEAKY_RELU), *units))
            self.stage_names.append(name)
            self.feature_info.append(FeatureInfo(out, 2 ** (index + 1), name))
            channels = out
        self._init_head(channels, num_classes)


class DarknetTiny(_StagedClassifier):
    """The YOLOv3-tiny backbone (darknet's yolov3-tiny.cfg): seven 3x3 convs with max pools between them.

    Stages: ``stem`` (16 channels, stride 1), then ``stage1``..``stage4`` = 2x2 max pool + conv with 32, 64,
    128, 256 channels (strides 2..16) and ``stage5`` = max pool, conv 512, a stride-1 2x2 max pool (zero
    padded right and bottom, as darknet does) and conv 1024 (stride 32).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3) -> None:
        super().__init__()
        self.stem = conv_bn_act(in_channels, 16, 3, act_layer=LEAKY_RELU)
        self.feature_info = [FeatureInfo(16, 1, "stem")]
        self.stage_names = ["stem"]
        channels = 16
        for index, out in enumerate((32, 64, 128, 256)):
            name = f"stage{index + 1}"
            self.add_module(name, nn.Sequential(nn.MaxPool2d(2, 2), conv_bn_act(channels, out, 3, act_layer=LEAKY_RELU)))
            self.stage_names.append(name)
            self.feature_info.append(FeatureInfo(out, 2 ** (index + 1), name))
            channels = out
        self.stage5 = nn.Sequential(
            nn.MaxPool2d(2, 2),
            conv_bn_act(channels, 512, 3, act_layer=LEAKY_RELU),
            nn.ZeroPad2d((0, 1, 0, 1)),
            nn.MaxPool2d(2, 1),
            conv_bn_act(512, 1024, 3, act_layer=LEAKY_RELU),
        )
        self.stage_names.append("stage5")
        self.feature_info.append(FeatureInfo(1024, 32, "stage5"))
        self._init_head(1024, num_classes)


class CSPDarknet(_StagedClassifier):
    """CSP-Darknet, the YOLOv5 (C3 blocks) and YOLOv8 (C2f blocks) backbone (Wang et al. 2020, CSPNet).

    A stride-2 stem, then four stages of a stride-2 3x3 conv and a CSP block with shortcuts; the last
    stage ends with SPPF. Base widths 64 (stem), 128, 256, 512, 1024 and base depths ``depths`` are scaled
    by ``width_multiple`` (capped at ``max_channels``) and ``depth_multiple``.

    Args:
        block: ``"c3"`` (YOLOv5) or ``"c2f"`` (YOLOv8).
        depth_multiple, width_multiple, max_channels: compound scaling (n/s/m/l/x).
        depths: base number of bottlenecks per stage (YOLOv5 ``(3, 6, 9, 3)``, YOLOv8 ``(3, 6, 6, 3)``).
        stem_kernel: 6 (YOLOv5 v6.0+, a 6x6 conv replacing the Focus layer) or 3 (YOLOv8).
        num_classes: classifier outputs (0: features only).
        in_channels: image channels.
    """

    def __init__(
        self,
        block: str = "c3",
        depth_multiple: float = 1.0,
        width_multiple: float = 1.0,
        max_channels: int | None = None,
        depths: Sequence[int] = (3, 6, 9, 3),
        stem_kernel: int = 6,
        num_classes: int = 0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        blocks: dict[str, Callable[..., nn.Module]] = {"c3": C3, "c2f": C2f}
        if block not in blocks:
            raise ValueError(f"CSPDarknet: block must be 'c3' or 'c2f', got {block!r}")
        widths = [scale_width(c, width_multiple, max_channels) for c in (64, 128, 256, 512, 1024)]
        self.stem = conv_bn_act(in_channels, widths[0], stem_kernel, 2, padding=(stem_kernel - 1) // 2)
        self.feature_info = [FeatureInfo(widths[0], 2, "stem")]
        self.stage_names = ["stem"]
        for index, depth in enumerate(depths):
            name = f"stage{index + 1}"
            layers = [
                conv_bn_act(widths[index], widths[index + 1], 3, 2),
                blocks[block](widths[index + 1], widths[index + 1], scale_depth(depth, depth_multiple), True),
            ]
            if index == len(depths) - 1:
                layers.append(SPPF(widths[-1], widths[-1], 5))
            self.add_module(name, nn.Sequential(*layers))
            self.stage_names.append(name)
            self.feature_info.append(FeatureInfo(widths[index + 1], 2 ** (index + 2), name))
        self._init_head(widths[-1], num_classes)


def stride_indices(feature_info: Sequence[FeatureInfo], strides: Sequence[int], name: str) -> list[int]:
    """Positions in ``feature_info`` of the last stage at each of ``strides``."""
    indices = []
    for stride in strides:
        matches = [i for i, info in enumerate(feature_info) if info.reduction == stride]
        if not matches:
            reductions = sorted({info.reduction for info in feature_info})
            raise ValueError(f"backbone {name!r} has no stage at stride {stride} (it has strides {reductions})")
        indices.append(matches[-1])
    return indices


class YoloBackbone(FeatureExtractor):
    """A classifier's maps at the detector's strides, with 1x1 convs matching the channels the neck expects.

    ``feature_info`` describes the classifier's maps; ``out_channels`` what comes out after the adapters.

    Args:
        model: a classifier following the contract (``feature_info``, ``forward_features``).
        strides: strides to take, e.g. ``(8, 16, 32)``.
        out_channels: channels the neck expects at each stride; a map that already has them passes as is.
        name: the backbone's name, for error messages.
    """

    def __init__(self, model: nn.Module, strides: Sequence[int], out_channels: Sequence[int], name: str) -> None:
        super().__init__(model, stride_indices(model.feature_info, strides, name))
        self.adapters = nn.ModuleList(
            nn.Identity() if c == o else conv_bn_act(c, o, 1) for c, o in zip(self.channels, out_channels)
        )
        self.out_channels = list(out_channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [adapter(x) for adapter, x in zip(self.adapters, super().forward(images))]


def yolo_backbone(
    default: Callable[[], nn.Module],
    strides: Sequence[int],
    out_channels: Sequence[int],
    backbone: str | None = None,
    backbone_weights: str | None = None,
    in_channels: int = 3,
) -> YoloBackbone:
    """The detector's own backbone (``default()``) or a registered classifier named by ``backbone``
    (``cvzoo.models.backbones.create_backbone``), at the neck's strides and channels.

    Args:
        default: builds the detector's own backbone (features only).
        strides: strides the neck consumes, finest first.
        out_channels: channels the neck expects at those strides.
        backbone: name of a registered classification model (e.g. ``"resnet50"``), or None.
        backbone_weights: local checkpoint for the backbone, loaded with ``strict=False`` (the classifier
            head and anything else that does not fit is reported and skipped).
        in_channels: image channels.
    """
    if backbone is None:
        model = default()
        if backbone_weights is not None:
            load_weights(model, backbone_weights, strict=False)
        return YoloBackbone(model, strides, out_channels, "default")
    model = create_backbone(backbone, in_channels, backbone_weights)
    return YoloBackbone(model, strides, out_channels, backbone)


register_model("darknet53", Darknet53, input_size=(3, 256, 256))
