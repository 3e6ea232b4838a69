"""What the YOLO detectors (v3, v5, v8) share as a family: their loss reduction, parameter groups,
input policy and default training recipe (the YOLOv5/v8 recipe of Jocher et al., ultralytics)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from cvzoo.models.detection.base import InputPolicy
from cvzoo.models.detection.dense import DenseDetector
from cvzoo.models.transfer import param_groups

# SGD 0.01 with momentum 0.937, 3 warm-up epochs with a high bias lr and a momentum ramp, nominal batch
# 64 (accumulation ramping up in warm-up), a linear decay held per epoch over all epochs, EMA, gradient
# clipping, mosaic closed for the last epochs, letterboxed 640 px squares.
YOLO_RECIPE: dict[str, Any] = {
    "data.img_size": 640, "data.batch_size": 16, "optim.name": "sgd", "optim.lr": 0.01,
    "optim.momentum": 0.937, "optim.weight_decay": 0.0005, "scheduler.name": "linear",
    "scheduler.warmup_epochs": 3.0, "scheduler.warmup_start_factor": 0.0, "scheduler.warmup_bias_lr": 0.1,
    "scheduler.warmup_momentum": 0.8, "scheduler.warmup_prefix": False,
    "scheduler.per_epoch": True, "train.nominal_batch_size": 64,
    "train.ema": True, "train.ema_decay": 0.9999, "train.clip_grad_norm": 10.0,
    "detect.augment.close_mosaic": 10,
    # NHWC convolutions: a YOLOv8n training step at 640 px, batch 8, 2 CPU threads takes 0.90x the time.
    "train.channels_last": True,
}


class YoloDetector(DenseDetector):
    """A YOLO: letterboxed inputs, a batch-sum loss and YOLOv5's three parameter groups."""

    input_policy: ClassVar[InputPolicy] = InputPolicy("letterbox", size_divisible=32)
    # The YOLO losses are sums over the batch's images (mean x batch size); with the nominal batch of 64
    # the trainer adds the accumulated batches' losses, as YOLOv5/v8 do (their lr 0.01 assumes it).
    loss_reduction: ClassVar[Literal["mean", "sum"]] = "sum"
    default_recipe: ClassVar[dict[str, Any]] = YOLO_RECIPE
    recipe_name: ClassVar[str] = "YOLO"
    exportable: ClassVar[bool] = True
    # Validation keeps nearly everything (the AP integral needs the low-confidence tail), as YOLOv5/v8 do.
    validation_settings: ClassVar[dict[str, Any]] = {"conf_threshold": 0.001, "iou_threshold": 0.7,
                                                     "max_detections": 300}
    # Letterboxed-square augmentation: mosaic (closed for the last epochs), mixup, the random affine, HSV,
    # flip and multi-scale batches.
    augment_keys: ClassVar[tuple[str, ...]] = ("hflip", "mosaic", "close_mosaic", "mixup", "hsv_h", "hsv_s", "hsv_v",
                                               "degrees", "translate", "affine_scale", "shear", "multiscale")

    def param_groups(self, lr: float, weight_decay: float, backbone_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """Three groups as in YOLOv5: conv/linear weights (decayed), norm weights and biases (not decayed);
        the bias group is the one the warm-up starts at ``scheduler.warmup_bias_lr``. With a
        ``backbone_lr_mult`` other than 1 each kind is split again into backbone and head."""
        split = "none" if backbone_lr_mult == 1.0 else "backbone"
        return param_groups(self, lr, backbone_lr_mult=backbone_lr_mult, weight_decay=weight_decay,
                            split=split, split_bias=True)
