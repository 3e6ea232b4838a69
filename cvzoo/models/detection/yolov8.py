"""YOLOv8-style anchor-free detectors: CSP-Darknet with C2f blocks and SPPF, a PAN neck without the
lateral convs, and a decoupled head (separate box and class branches) trained with task-aligned
assignment (TOOD), BCE, CIoU and distribution focal loss (GFL).

Each point of the stride-8/16/32 grids predicts the distances from its centre to the four box sides,
each as a distribution over ``reg_max = 16`` bins in stride units (the expected value is the distance,
Li et al. 2020), and one sigmoid score per class; there is no objectness and no anchor box.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
from torch import nn

from cvzoo.models.detection.darknet import CSPDarknet, yolo_backbone
from cvzoo.models.detection.yolo_common import C2f, conv_bn_act, scale_depth, scale_width
from cvzoo.models.detection.yolo_family import YoloDetector
from cvzoo.models.detection.yolo_loss import YoloV8Loss, expected_distances
from cvzoo.models.detection.yolov3 import level_names
from cvzoo.models.necks import PathAggregationNetwork
from cvzoo.models.registry import register_model
from cvzoo.models.weights import register_remap
from cvzoo.ops import dist2bbox, make_grid_points

STRIDES = (8, 16, 32)


class DecoupledHead(nn.Module):
    """YOLOv8's head: per level a box branch and a class branch, each two 3x3 convs and a 1x1 prediction.

    Widths as in YOLOv8: box ``max(16, C_3 / 4, 4 reg_max)``, class ``max(C_3, min(K, 100))`` with ``C_3``
    the finest level's channels. Biases start at a box distance logit of 1 and a class prior of about
    5 objects per 640 x 640 image spread over the level's cells and the classes (cf. RetinaNet's prior,
    Lin et al. 2017b).

    Args:
        in_channels: channels per level, finest first.
        num_classes: ``K``.
        reg_max: bins per box side.
        strides: stride per level (for the class prior).
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, reg_max: int, strides: Sequence[int]) -> None:
        super().__init__()
        box_width = max(16, in_channels[0] // 4, 4 * reg_max)
        cls_width = max(in_channels[0], min(num_classes, 100))
        self.box_branches = nn.ModuleList(
            nn.Sequential(conv_bn_act(c, box_width, 3), conv_bn_act(box_width, box_width, 3),
                          nn.Conv2d(box_width, 4 * reg_max, 1))
            for c in in_channels
        )
        self.cls_branches = nn.ModuleList(
            nn.Sequential(conv_bn_act(c, cls_width, 3), conv_bn_act(cls_width, cls_width, 3),
                          nn.Conv2d(cls_width, num_classes, 1))
            for c in in_channels
        )
        with torch.no_grad():
            for box, cls, stride in zip(self.box_branches, self.cls_branches, strides):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / num_classes / (640 / stride) ** 2))

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Maps ``[B, C_l, H_l, W_l]`` -> ``[B, 4 reg_max + K, H_l, W_l]`` (box logits first)."""
        return [
            torch.cat((box(x), cls(x)), dim=1)
            for box, cls, x in zip(self.box_branches, self.cls_branches, features)
        ]


class YOLOv8(YoloDetector):
    """YOLOv8 at a given depth, width and channel cap.

    ``raw_outputs`` returns ``{"p3": [B, 4 reg_max + K, H/8, W/8], "p4": ..., "p5": ...}`` (box-side bin
    logits, then class logits); ``decode`` gives ``[B, A, 4 + K]`` xyxy input pixels and sigmoid class
    scores, ``A = sum_l H_l W_l``.

    Args:
        num_classes: ``K`` (80 for COCO).
        depth_multiple, width_multiple, max_channels: compound scaling (n/s/m/l/x).
        reg_max: bins per box side (16).
        in_channels: image channels.
        backbone: name of a registered classifier to use instead of CSP-Darknet (e.g. ``"resnet18"``).
        backbone_weights: local checkpoint for the backbone (loaded with ``strict=False``).
        loss_options: keyword arguments of :class:`YoloV8Loss` (gains, assigner ``topk/alpha/beta``).
    """

    def __init__(
        self,
        num_classes: int = 80,
        depth_multiple: float = 0.33,
        width_multiple: float = 0.25,
        max_channels: int = 1024,
        reg_max: int = 16,
        in_channels: int = 3,
        backbone: str | None = None,
        backbone_weights: str | None = None,
        loss_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes, self.strides, self.reg_max = num_classes, STRIDES, reg_max
        channels = [scale_width(c, width_multiple, max_channels) for c in (256, 512, 1024)]

        def own_backbone() -> CSPDarknet:
            return CSPDarknet("c2f", depth_multiple, width_multiple, max_channels, (3, 6, 6, 3), 3,
                              in_channels=in_channels)

        self.backbone = yolo_backbone(own_backbone, STRIDES, channels, backbone, backbone_weights, in_channels)
        self.neck = PathAggregationNetwork(
            channels, channels, partial(C2f, shortcut=False), scale_depth(3, depth_multiple),
            conv=conv_bn_act, lateral_convs=False,
        )
        self.head = DecoupledHead(channels, num_classes, reg_max, STRIDES)
        self.criterion = YoloV8Loss(num_classes, STRIDES, reg_max, **dict(loss_options or {}))
        self.level_names = level_names(STRIDES)

    def raw_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``[B, 3, H, W]`` (H, W multiples of 32) -> raw head maps per level."""
        return dict(zip(self.level_names, self.head(self.neck(self.backbone(images)))))

    def compute_loss(
        self, outputs: dict[str, torch.Tensor], targets: Sequence[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return self.criterion([outputs[name] for name in self.level_names], targets)

    def decode(self, outputs: dict[str, torch.Tensor], min_score: float | None = None) -> torch.Tensor:
        """``[B, A, 4 + K]``. With ``min_score``, only the points whose best class score exceeds it get
        their box decoded (the rest keep a zero-size box at their point): what NMS with that confidence
        threshold keeps is unchanged, and the softmax over the box bins, the costliest step of decoding
        (~1 ms of a CPU prediction at 640 px), runs on a few rows instead of thousands."""
        maps = [outputs[name] for name in self.level_names]
        # NHWC -> [B, HW, C] is a view for channels-last maps (cvzoo predict), one copy for NCHW ones.
        flat = torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, m.shape[1]) for m in maps], dim=1)
        box_logits, cls_logits = flat.split((4 * self.reg_max, self.num_classes), dim=-1)
        sizes = [(m.shape[2], m.shape[3]) for m in maps]
        points, point_strides = make_grid_points(sizes, self.strides, 0.5, flat.device, flat.dtype)
        scores = cls_logits.sigmoid()
        if min_score is None:
            distances = expected_distances(box_logits, self.reg_max)
        else:
            keep = scores.amax(dim=-1) > min_score  # [B, A]
            distances = box_logits.new_zeros((*box_logits.shape[:2], 4))
            distances[keep] = expected_distances(box_logits[keep], self.reg_max)
        return torch.cat((dist2bbox(distances * point_strides[:, None], points), scores), dim=-1)

    def decode_candidates(self, outputs: dict[str, torch.Tensor], min_score: float) -> torch.Tensor:
        return self.decode(outputs, min_score=min_score)


# ultralytics' YOLOv8 layer indices (its yolov8.yaml, every scale) -> cvzoo module paths. Layers 10, 11,
# 13, 14, 17 and 20 (upsampling, concatenation) have no weights.
_ULTRALYTICS_V8_LAYERS = {
    0: "backbone.body.stem", 1: "backbone.body.stage1.0", 2: "backbone.body.stage1.1",
    3: "backbone.body.stage2.0", 4: "backbone.body.stage2.1", 5: "backbone.body.stage3.0",
    6: "backbone.body.stage3.1", 7: "backbone.body.stage4.0", 8: "backbone.body.stage4.1",
    9: "backbone.body.stage4.2", 12: "neck.top_down4", 15: "neck.top_down3", 16: "neck.down3",
    18: "neck.bottom_up4", 19: "neck.down4", 21: "neck.bottom_up5",
}
# Inside a layer: C2f's cv1 / cv2 / m.i.cv1 / m.i.cv2 and SPPF's cv1 / cv2 (layer 9).
_ULTRALYTICS_V8_PARTS = (("m.", "blocks."), ("cv1.", "split."), ("cv2.", "fuse."))


def ultralytics_yolov8_to_cvzoo(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of an ultralytics YOLOv8 detection state dict (``YOLO("yolov8n.pt").model.state_dict()``,
    saved by the user with ultralytics installed) -> cvzoo's :class:`YOLOv8` keys.

    The layer order of ultralytics' ``yolov8.yaml`` fixes the mapping; the Detect head's ``cv2`` (box) and
    ``cv3`` (class) branches are cvzoo's ``box_branches`` / ``cls_branches``, and its fixed DFL conv (the
    bin indices 0..15, which cvzoo computes) is dropped. Only key names change; shapes are checked when
    the result is loaded.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] != "model" or len(parts) < 3 or not parts[1].isdigit():
            raise KeyError(f"not an ultralytics YOLOv8 key: {key!r}")
        index, rest = int(parts[1]), ".".join(parts[2:])
        if index == 22:  # Detect
            if rest.startswith("dfl."):
                continue
            branch = {"cv2": "box_branches", "cv3": "cls_branches"}.get(parts[2])
            if branch is None:
                raise KeyError(f"unexpected ultralytics Detect key {key!r}")
            out[f"head.{branch}.{'.'.join(parts[3:])}"] = value
            continue
        if index not in _ULTRALYTICS_V8_LAYERS:
            raise KeyError(f"ultralytics YOLOv8 layer {index} has no cvzoo counterpart ({key!r})")
        if index == 9:
            rest = rest.replace("cv1.", "reduce.", 1).replace("cv2.", "fuse.", 1)
        else:
            for theirs, ours in _ULTRALYTICS_V8_PARTS:
                if rest.startswith(theirs):
                    rest = ours + rest[len(theirs):]
                    break
            # inside a bottleneck (blocks.i.cv1 / cv2) -> blocks.i.conv1 / conv2
            rest = rest.replace(".cv1.", ".conv1.").replace(".cv2.", ".conv2.")
        out[f"{_ULTRALYTICS_V8_LAYERS[index]}.{rest}"] = value
    return out


register_remap("yolov8", ultralytics_yolov8_to_cvzoo, name="ultralytics:yolov8")

_DETECT = {"task": "detect", "input_size": (3, 640, 640)}
register_model("yolov8n", YOLOv8, depth_multiple=0.33, width_multiple=0.25, max_channels=1024, **_DETECT)
register_model("yolov8s", YOLOv8, depth_multiple=0.33, width_multiple=0.50, max_channels=1024, **_DETECT)
register_model("yolov8m", YOLOv8, depth_multiple=0.67, width_multiple=0.75, max_channels=768, **_DETECT)
register_model("yolov8l", YOLOv8, depth_multiple=1.00, width_multiple=1.00, max_channels=512, **_DETECT)
register_model("yolov8x", YOLOv8, depth_multiple=1.00, width_multiple=1.25, max_channels=512, **_DETECT)
