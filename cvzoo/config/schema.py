"""The typed configuration of a run. YAML recipes and ``--set a.b=c`` overrides map onto these.

Every field has a default, so ``Config()`` is a valid (if small) run; unknown keys are rejected by
``cvzoo.config.from_dict`` with the dotted key and close matches. The tasks, their sections and their
defaults are in ``cvzoo.config.tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cvzoo.config.core import ConfigError
from cvzoo.config.tasks import TASKS, TaskSections


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
class DataConfig:
    # A dataset path or a bundled name ("fashion_mnist_sample"); see docs/data.md for the layouts.
    source: str = "fashion_mnist_sample"
    img_size: int = 0  # 0 = the dataset's native size (classification) / 640 (detection)
    val_fraction: float = 0.0
    batch_size: int = 64
    val_batch_size: int = 0  # 0 = 2 x batch_size
    workers: int = -1  # -1 = chosen from the device, the cores and the measured load time (engine/workers.py)
    strict: bool = False  # corrupt images: error instead of warning + skip
    # Decoded training and validation images kept in RAM: "ram" (or true), false, or "auto": not on a CPU;
    # elsewhere cache when they fit in half the available memory and decoding is a fifth or more of loading
    # a sample (cvzoo/engine/image_cache.py; the measured reason in the README).
    cache: bool | Literal["auto", "ram"] = "auto"
    # Detection: the class names in label order, for every split (empty: from the training split's
    # annotations; VOC and Labelme name classes per object, so a split may lack some).
    names: tuple[str, ...] = ()
    # Keep at most this many samples of the train split / of any other split (0 = all): smoke runs, tests,
    # benchmarks. Every task keeps the first ones, each class's first in turn where a sample has one class
    # (Task.kept_indices, cvzoo/data/limit.py; docs/data.md).
    limit_train: int = 0
    limit_val: int = 0

    def eval_batch_size(self) -> int:
        """The validation batch size (``val_batch_size``, or twice ``batch_size`` when 0): one definition
        for the trainer, ``cvzoo val`` and the datasets whose batch shapes depend on it (``detect.rect_val``)."""
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
    # How PyTorch runs the update: "fused" (one kernel over all tensors), "foreach" (batched per-op kernels),
    # "loop" (one tensor at a time). "auto": fused where every parameter is on the CPU (measured 2.7x-3.8x
    # faster per step than PyTorch's CPU default, the loop; see cvzoo.engine.optim), PyTorch's default elsewhere.
    implementation: Literal["auto", "fused", "foreach", "loop"] = "auto"


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
    # Multistep milestones as fractions of the run's epochs (rounded to whole epochs); when set they
    # replace ``milestones``, so a recipe's schedule keeps its shape for any number of epochs.
    milestone_fractions: tuple[float, ...] = ()
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
    # Print after each epoch where its time went: data, to_device, forward, backward, optimizer,
    # schedule_ema, validation, checkpoint (cvzoo/engine/profile.py).
    profile: bool = False


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
class GeneralConfig:
    """The sections every run has; ``Config`` adds each task's section (``cvzoo.config.tasks``)."""

    task: str = "classify"  # a name in cvzoo.config.tasks.TASKS
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        # Checked here rather than by a Literal type: the registry, not this class, lists the tasks.
        if self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} is not a task; choose one of {', '.join(TASKS)}")


@dataclass
class Config(TaskSections, GeneralConfig):
    """The typed configuration of a run: the general sections, then each task's own section
    (``TASKS[task].section`` names the one a task reads). Dataclasses collect the fields of the bases in
    reverse method-resolution order, so the general sections come first, as in args.yaml."""
