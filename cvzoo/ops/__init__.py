"""Pure tensor operations for detection: box formats and the IoU family, NMS and Soft-NMS, anchors,
box coders, matchers and assigners (imports torch, torchvision, numpy and scipy only)."""

from cvzoo.ops._checks import ShapeError
from cvzoo.ops.anchors import AnchorGenerator, make_grid_points, ssd_default_boxes, ssd_scales
from cvzoo.ops.assigners import TaskAlignedAssigner, TaskAlignedTargets
from cvzoo.ops.box_coders import (
    DeltaBoxCoder,
    SSDBoxCoder,
    bbox2dist,
    dist2bbox,
    yolo_decode_v3,
    yolo_decode_v5,
    yolo_grid,
)
from cvzoo.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    box_iou_elementwise,
    clip_boxes,
    complete_box_iou,
    complete_box_iou_elementwise,
    distance_box_iou,
    distance_box_iou_elementwise,
    generalized_box_iou,
    generalized_box_iou_elementwise,
    remove_small_boxes,
    valid_boxes_mask,
)
from cvzoo.ops.matchers import (
    HungarianMatcher,
    IoUMatcher,
    fcos_assign,
    fcos_center_sampling,
    fcos_centerness,
    fcos_size_ranges,
)
from cvzoo.ops.nms import batched_nms, nms, soft_nms
from cvzoo.ops.yolo_targets import YoloV3Targets, YoloV5Targets, yolo_v3_assign, yolo_v5_build_targets

__all__ = [
    "AnchorGenerator",
    "DeltaBoxCoder",
    "HungarianMatcher",
    "IoUMatcher",
    "SSDBoxCoder",
    "ShapeError",
    "TaskAlignedAssigner",
    "TaskAlignedTargets",
    "YoloV3Targets",
    "YoloV5Targets",
    "batched_nms",
    "bbox2dist",
    "box_area",
    "box_convert",
    "box_iou",
    "box_iou_elementwise",
    "clip_boxes",
    "complete_box_iou",
    "complete_box_iou_elementwise",
    "dist2bbox",
    "distance_box_iou",
    "distance_box_iou_elementwise",
    "fcos_assign",
    "fcos_center_sampling",
    "fcos_centerness",
    "fcos_size_ranges",
    "generalized_box_iou",
    "generalized_box_iou_elementwise",
    "make_grid_points",
    "nms",
    "remove_small_boxes",
    "soft_nms",
    "ssd_default_boxes",
    "ssd_scales",
    "valid_boxes_mask",
    "yolo_decode_v3",
    "yolo_decode_v5",
    "yolo_grid",
    "yolo_v3_assign",
    "yolo_v5_build_targets",
]
