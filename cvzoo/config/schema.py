"""The typed configuration of a run. YAML recipes and ``--set a.b=c`` overrides map onto these.

Every field has a default, so ``Config()`` is a valid (if small) run; unknown keys are rejected by
``cvzoo.config.from_dict`` with the dotted key and close matches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class ModelConfig:
    name: str = "resnet20_cifar"
    # Local checkpoint (torchvision / timm / cvzoo layout) loaded into the model before training.
    weights: str | None = None
    # Load by name and shape and report the rest (transfer learning) instead of requiring a full match.
    weights_strict: bool = False
    # Re-initialise the head when the checkpoint's class count differs from the data's.
    reset_head: bool = False
    # Freeze the first N stages (stem counts as one) of a classification backbone; 0 = train everything.
    freeze: int = 0
    # Extra constructor arguments for the registered model (e.g. {drop_rate: 0.2}).
    kwargs: dict[str, Any] = field(default_factory=dict)
    # Detection/segmentation: registered classification backbone replacing the default one.
    backbone: str | None = None
    backbone_weights: str | None = None


@dataclass
class AugmentConfig:
    hflip: float = 0.5
    scale: tuple[float, float] = (0.08, 1.0)
    color_jitter: float = 0.0
    randaugment: bool = False
    random_erasing: float = 0.0
    # Small images (<= 64 px): zero padding before the random crop; -1 = round(img_size / 8).
    padding: int = -1
    # Batch-level mixing (classification): probability-weighted MixUp/CutMix with these alphas (0 = off).
    mixup: float = 0.0
    cutmix: float = 0.0
    # Detection
    mosaic: float = 1.0
    close_mosaic: int = 0
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    affine_scale: float = 0.5
    shear: float = 0.0
    # Metric learning (siamese), batched per image: elastic distortion of Simard et al. (2003), noise
    # smoothed by a Gaussian of elastic_sigma px and scaled by elastic_alpha (0 = off), and the
    # probability of a 3x3 dilation (wider bright strokes). degrees/shear/affine_scale also apply there.
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    dilate: float = 0.0
    # Multi-scale training (YOLOv2/v3, YOLOv5's --multi-scale): each batch is resized to a random
    # multiple of the model's largest stride in [0.5, 1.5] x img_size; validation keeps img_size.
    multiscale: bool = False


@dataclass
class DataConfig:
    # A dataset path or a bundled name ("fashion_mnist_sample"); see docs/data.md for the layouts.
    source: str = "fashion_mnist_sample"
    img_size: int = 0  # 0 = the dataset's native size (classification) / 640 (detection)
    val_fraction: float = 0.0
    batch_size: int = 64
    val_batch_size: int = 0  # 0 = 2 x batch_size
    workers: int = -1  # -1 = chosen from the device and CPU count
    strict: bool = False  # corrupt images: error instead of warning + skip
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Detection: rectangular validation batches (YOLOv5's rect). Val images are sorted by aspect ratio
    # and each batch is letterboxed to one shape with the long side = img_size and the short side only
    # as large as its images need (a multiple of 32): less padding, faster validation. False = squares.
    rect_val: bool = True
    # Keep at most this many samples per split (0 = all); handy for smoke runs.
    limit_train: int = 0
    limit_val: int = 0

    def eval_batch_size(self) -> int:
        """The validation batch size (``val_batch_size``, or twice ``batch_size`` when 0): one definition
        for the trainer, ``cvzoo val`` and the datasets whose batch shapes depend on it (``rect_val``)."""
        return self.val_batch_size or 2 * self.batch_size


@dataclass
class OptimConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    betas: tuple[float, float] = (0.9, 0.999)
    no_decay_norm_bias: bool = True
    backbone_lr_mult: float = 1.0


@dataclass
class SchedulerConfig:
    name: Literal["cosine", "linear", "step", "multistep", "onecycle", "poly", "constant"] = "cosine"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.1
    warmup_bias_lr: float = 0.0  # YOLO-style: biases start at this lr during warm-up (0 = off)
    warmup_momentum: float = 0.0  # YOLO-style: momentum ramps from this value during warm-up (0 = off)
    # True: the schedule starts after warm-up; False: it spans all epochs and warm-up ramps towards it (YOLO)
    warmup_prefix: bool = True
    per_epoch: bool = False  # hold the lr within each epoch (YOLO's epoch-stepped schedule); False: every step
    min_lr_ratio: float = 0.01  # the floor: lr never goes below lr * min_lr_ratio after warm-up
    step_size: int = 30
    milestones: tuple[int, ...] = (30, 60, 90)
    gamma: float = 0.1
    power: float = 0.9
    pct_start: float = 0.3


@dataclass
class TrainConfig:
    epochs: int = 10
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: bool = False  # fp16 + GradScaler on CUDA, bf16 autocast on CPU
    accumulate: int = 1  # optimizer step every N batches
    nominal_batch_size: int = 0  # >0: accumulate to reach this batch size (YOLO's nbs; ramps up in warm-up)
    clip_grad_norm: float = 0.0
    ema: bool = False
    ema_decay: float = 0.9998
    # The EMA's decay ramps as ema_decay * (1 - exp(-updates / ema_tau)) (YOLOv5's 2000); a run of a few
    # hundred steps needs a shorter ramp, or its average hardly starts.
    ema_tau: float = 2000.0
    label_smoothing: float = 0.0
    early_stop_patience: int = 0  # epochs without improvement of the fitness metric; 0 = off
    fitness_metric: str = ""  # "" = the task's default (top1, mAP50-95, mIoU, ...)
    seed: int = 0
    deterministic: bool = False
    sync_bn: bool = False
    channels_last: bool = False
    val_interval: int = 1
    val_augment: bool = False  # validate with test-time augmentation (tasks with supports_augment)
    log_images: bool = True
    aux_loss_weight: float = 0.3  # GoogLeNet aux heads (0.3 each), segmentation aux head
    compile: bool = False


@dataclass
class RunConfig:
    project: str = "runs"
    name: str = "exp"
    exist_ok: bool = False
    resume: str | None = None  # path to last.pt, or "auto" for the newest run of this name
    save_period: int = 0  # also keep epoch<N>.pt every N epochs
    plots: bool = True
    tensorboard: bool = True
    progress: bool = True


@dataclass
class MetricLearningConfig:
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


@dataclass
class Config:
    task: Literal["classify", "detect", "segment", "siamese"] = "classify"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    metric: MetricLearningConfig = field(default_factory=MetricLearningConfig)


# Defaults that differ per task, applied before a recipe and the user's flags. Detection follows the
# YOLOv5/v8 recipe (Jocher et al.): SGD 0.01 with momentum 0.937, 3 warm-up epochs with a high bias lr
# and a momentum ramp, nominal batch 64 (accumulation ramping up in warm-up), a linear decay held per epoch
# over all epochs, EMA, gradient clipping, mosaic closed for the last epochs.
TASK_DEFAULTS: dict[str, dict[str, object]] = {
    "classify": {},
    "detect": {
        "model.name": "yolov8n", "data.img_size": 640, "data.batch_size": 16, "optim.lr": 0.01,
        "optim.momentum": 0.937, "optim.weight_decay": 0.0005, "scheduler.name": "linear",
        "scheduler.warmup_epochs": 3.0, "scheduler.warmup_start_factor": 0.0, "scheduler.warmup_bias_lr": 0.1,
        "scheduler.warmup_momentum": 0.8, "scheduler.warmup_prefix": False,
        "scheduler.per_epoch": True, "train.nominal_batch_size": 64,
        "train.ema": True, "train.ema_decay": 0.9999, "train.clip_grad_norm": 10.0, "data.augment.close_mosaic": 10,
        # NHWC convolutions: a YOLOv8n training step at 640 px, batch 8, 2 CPU threads takes 0.90x the time.
        "train.channels_last": True,
    },
    "segment": {
        "model.name": "deeplabv3_resnet50", "optim.lr": 0.01, "optim.weight_decay": 0.0001,
        "scheduler.name": "poly", "scheduler.min_lr_ratio": 0.0, "train.aux_loss_weight": 0.5,
        "data.batch_size": 8,
    },
    "siamese": {"model.name": "resnet20_cifar", "optim.lr": 0.05},
}
