"""The tasks a run can have, and each task's own config section.

This module is the one place a task is added: its options as a section dataclass (a field of
``Config`` named by the spec's ``section``) and one ``TaskSpec`` in ``TASKS`` naming the ``Task``
subclass and the task's defaults. ``Config.task``, ``cvzoo train --task`` and
``cvzoo.tasks.task_class`` all read ``TASKS``.

Options used by several tasks (``hflip``, ``degrees``...) are repeated in each task's section on
purpose: each task has its own default, and a recipe for one task cannot change another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


# --------------------------------------------------------------------------------------- classify
@dataclass
class ClassifyAugment:
    hflip: float = 0.5
    scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area fraction
    color_jitter: float = 0.0
    randaugment: bool = False
    random_erasing: float = 0.0
    # Small images (<= 64 px): zero padding before the random crop; -1 = round(img_size / 8).
    padding: int = -1
    # Batch-level mixing: probability-weighted MixUp/CutMix with these alphas (0 = off).
    mixup: float = 0.0
    cutmix: float = 0.0


@dataclass
class ClassifyConfig:
    """The classification task (``task: classify``)."""

    augment: ClassifyAugment = field(default_factory=ClassifyAugment)


# ----------------------------------------------------------------------------------------- detect
@dataclass
class DetectAugment:
    hflip: float = 0.5
    mosaic: float = 1.0
    close_mosaic: int = 0  # mosaic off for the last N epochs (the YOLO recipe sets 10)
    mixup: float = 0.0  # probability of blending two training samples (YOLOv5's MixUp)
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    affine_scale: float = 0.5
    shear: float = 0.0
    # Multi-scale training (YOLOv2/v3, YOLOv5's --multi-scale): each batch is resized to a random
    # multiple of the model's largest stride in [0.5, 1.5] x img_size; validation keeps img_size.
    multiscale: bool = False
    # SSD's preset (Liu et al. 2016, sec. 2.2 / 3.6), for images served at their own size: the probability of
    # each photometric distortion (brightness, contrast, saturation, hue, channel order), of a zoom out
    # (canvas 1-4x the image, filled with the mean) and of SSD's min-IoU crop. Only the SSD models take them.
    photometric: float = 0.0
    zoom_out: float = 0.0
    iou_crop: float = 0.0


@dataclass
class DetectConfig:
    """The detection task (``task: detect``)."""

    augment: DetectAugment = field(default_factory=DetectAugment)
    # Rectangular validation batches (YOLOv5's rect). Val images are sorted by aspect ratio and each
    # batch is letterboxed to one shape with the long side = img_size and the short side only as large
    # as its images need (a multiple of 32): less padding, faster validation. False = squares.
    rect_val: bool = True


# ---------------------------------------------------------------------------------------- segment
@dataclass
class SegmentAugment:
    hflip: float = 0.5
    vflip: float = 0.0  # for top-down images such as microscopy
    # The shorter side is resized to img_size * s, s ~ U(scale), before the img_size crop.
    scale: tuple[float, float] = (0.5, 2.0)
    color_jitter: float = 0.0


@dataclass
class SegmentConfig:
    """The semantic segmentation task (``task: segment``)."""

    # The segmenter's criterion; "+dice" adds dice_weight x the Dice loss.
    loss: Literal["ce", "dice", "focal", "ce+dice", "focal+dice"] = "ce"
    dice_weight: float = 1.0
    focal_gamma: float = 2.0  # focusing parameter of the softmax focal loss
    class_weights: tuple[float, ...] | None = None  # one weight per class for the cross-entropy / focal terms
    ignore_unknown: bool = False  # mask values outside the class list become 255 (ignored) instead of an error
    allow_missing_masks: bool = False  # images without a mask are skipped with a warning instead of an error
    eval_size: int = 0  # evaluate/predict with the shorter side resized to this; 0 = the original size
    augment: SegmentAugment = field(default_factory=SegmentAugment)


# ---------------------------------------------------------------------------------------- siamese
@dataclass
class SiameseAugment:
    hflip: float = 0.5
    padding: int = -1  # zero padding before the random crop; -1 = round(img_size / 8)
    # Batched per image: a rotation / shear / zoom in 1 +- affine_scale (the zoom only with a rotation
    # or shear), elastic distortion of Simard et al. (2003) (noise smoothed by a Gaussian of
    # elastic_sigma px, scaled by elastic_alpha; 0 = off) and the probability of a 3x3 dilation
    # (wider bright strokes).
    degrees: float = 0.0
    shear: float = 0.0
    affine_scale: float = 0.5
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    dilate: float = 0.0


@dataclass
class SiameseConfig:
    """The Siamese / metric-learning task (``task: siamese``)."""

    embedding_dim: int = 64
    loss: Literal["triplet", "contrastive", "supcon"] = "triplet"
    margin: float = 0.5  # triplet and contrastive
    temperature: float = 0.1  # supcon (supervised contrastive, Khosla et al. 2020)
    # > 0: two augmented views of every training image, and this weight times an instance term (each
    # view's only positive is the other view: SimCLR's NT-Xent, Chen et al. 2020) added to the loss.
    instance_weight: float = 0.0
    # Classes never seen in training; verification is measured on pairs of these classes' val images.
    heldout_classes: tuple[int, ...] = (7, 8, 9)
    eval_pairs: int = 4000
    retrieval_k: tuple[int, ...] = (1, 5)
    augment: SiameseAugment = field(default_factory=SiameseAugment)


# -------------------------------------------------------------------------------------------- gan
@dataclass
class GanOptimizer:
    """The Adam settings of one of the GAN's two optimizers. ``None``: not set; the model's recipe sets
    them (DCGAN's for dcgan_* / cdcgan_*, WGAN-GP's for wgan_gp_*), and a config without them is an error."""

    lr: float | None = None
    betas: tuple[float, float] | None = None
    clip_grad_norm: float = 0.0  # 0 = off


@dataclass
class GanConfig:
    """Generative adversarial networks (``task: gan``)."""

    generator: GanOptimizer = field(default_factory=GanOptimizer)
    discriminator: GanOptimizer = field(default_factory=GanOptimizer)
    # Discriminator (critic) steps per generator step: 1 for DCGAN, 5 for WGAN-GP (Gulrajani et al. 2017).
    n_critic: int = 1
    # The FID / KID features of validation, by file: a cvzoo classify checkpoint trained on the same
    # data (its pooled features, and its predictions a conditional GAN's classification accuracy score),
    # or pytorch-fid's Inception weights file pt_inception-2015-12-05-6726825d.pth (the standard FID,
    # no accuracy score). None: neither.
    features: str | None = None


# ------------------------------------------------------------------------------------------ video
@dataclass
class VideoAugment:
    # Mirrors the whole clip; off by default: it swaps leftward and rightward motions (generated set).
    hflip: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)  # area fraction of the training crop (the same for every frame)


@dataclass
class VideoConfig:
    """Video classification (``task: video``): clips ``[B, C, T, H, W]``."""

    frames: int = 8  # frames per clip (T)
    stride: int = 1  # distance between a clip's frames in its video
    clips_per_video: int = 3  # validation: evenly spaced clips per video, averaged for video-level accuracy
    # A video shorter than one clip ((frames - 1) * stride + 1 frames): an error naming it, or left out
    # with a warning and counted.
    short: Literal["error", "skip"] = "error"
    # data.source "moving_fashion": the number of generated clips per split.
    synthetic_train: int = 1024
    synthetic_val: int = 256
    augment: VideoAugment = field(default_factory=VideoAugment)


# --------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class TaskSpec:
    """A task: where its code and its options are, and the defaults it starts from."""

    # "module:Class" of the Task subclass; imported on demand by cvzoo.tasks.task_class.
    implementation: str
    # The Config field holding the task's options.
    section: str
    # Dotted keys applied before a recipe and the user's flags: the settings where the task differs
    # from the dataclass defaults.
    defaults: dict[str, Any] = field(default_factory=dict)
    # The registry task of its models (``register_model(..., task=...)``) when it is not the task's own
    # name: instance segmentation runs detectors.
    model_task: str = ""


# A detector's training recipe is its family's (``Detector.default_recipe``, applied after these
# defaults by ``cvzoo.api.build_config``): YOLO's for the default model.
TASKS: dict[str, TaskSpec] = {
    "classify": TaskSpec("cvzoo.tasks.classification:ClassificationTask", "classify"),
    "detect": TaskSpec("cvzoo.tasks.detection:DetectionTask", "detect", {"model.name": "yolov8n"}),
    # Instance segmentation shares the detection options (a detector whose detections carry masks).
    "instance": TaskSpec("cvzoo.tasks.instance:InstanceSegmentationTask", "detect",
                         {"model.name": "maskrcnn_resnet50_fpn"}, model_task="detect"),
    "segment": TaskSpec("cvzoo.tasks.segmentation:SegmentationTask", "segment", {
        "model.name": "deeplabv3_resnet50", "optim.lr": 0.01, "optim.weight_decay": 0.0001,
        "scheduler.name": "poly", "scheduler.min_lr_ratio": 0.0, "train.aux_loss_weight": 0.5,
        "data.batch_size": 8,
    }),
    "siamese": TaskSpec("cvzoo.tasks.siamese:SiameseTask", "siamese", {
        "model.name": "resnet20_cifar", "optim.lr": 0.05,
    }),
    # The optimizers' settings come from the model's recipe (``GAN.default_recipe``: DCGAN's Adam 2e-4,
    # betas (0.5, 0.999); WGAN-GP's 1e-4, (0, 0.9), n_critic 5); both papers keep the lr constant and
    # the EMA of the generator (Yazici et al. 2019) is what validates and predicts.
    "gan": TaskSpec("cvzoo.tasks.gan:GanTask", "gan", {
        "model.name": "dcgan_28", "scheduler.name": "constant", "data.batch_size": 64, "train.epochs": 20,
        "train.ema": True, "train.ema_decay": 0.999, "train.ema_tau": 200.0, "data.val_batch_size": 250,
    }),
    "video": TaskSpec("cvzoo.tasks.video:VideoTask", "video", {
        "model.name": "cnn_lstm", "data.source": "moving_fashion", "data.batch_size": 16,
        "optim.name": "adamw", "optim.lr": 0.001, "optim.weight_decay": 0.01,
    }),
}



@dataclass
class TaskSections:
    """The options of every task, one field per ``TaskSpec.section``. ``cvzoo.config.Config`` inherits
    these fields (after its general sections), so a new task is declared in this file alone: its section
    dataclass, its field here and its ``TaskSpec`` in ``TASKS``."""

    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    siamese: SiameseConfig = field(default_factory=SiameseConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    video: VideoConfig = field(default_factory=VideoConfig)


__all__ = [
    "TASKS", "TaskSections", "ClassifyAugment", "ClassifyConfig", "DetectAugment", "DetectConfig", "SegmentAugment",
    "SegmentConfig", "SiameseAugment", "SiameseConfig", "TaskSpec", "GanConfig", "GanOptimizer", "VideoAugment", "VideoConfig",
]
