"""Range checks of a built Config: a value the types accept but the run cannot use is one clear error.

``from_dict`` / ``apply_overrides`` check types (an int is an int); this module checks meaning
(a batch size of 0 is an int, but no batch). Without it such values fail deep inside a run, after the
run folder exists: a ZeroDivisionError in the data loader, a NaN loss, a model that never moves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cvzoo.config.core import ConfigError, get_value
from cvzoo.config.schema import Config

# The largest stride of the zoo's detectors: DetectionDataset letterboxes to multiples of it and
# rejects other sizes. Repeated here (the config layer imports no data code) to fail before the run.
DETECTION_STRIDE = 32


@dataclass(frozen=True)
class Range:
    """``low <= value <= high`` (``<`` where ``open_low`` / ``open_high``); ``None`` = unbounded."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def contains(self, value: float) -> bool:
        # Written as "value passes" so that NaN (every comparison False) fails, as does infinity.
        if not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, open_low=True)
PROBABILITY = Range(0, 1)
FRACTION_BELOW_1 = Range(0, 1, open_high=True)
OPEN_UNIT = Range(0, 1, open_low=True, open_high=True)
OPEN_UNIT_OR_1 = Range(0, 1, open_low=True)

# Every numeric field with a known valid range, by dotted key. Tuple fields apply the range to each item;
# an optional field set to None is not checked.
RANGES: dict[str, Range] = {
    "model.freeze": AT_LEAST_0,
    "data.img_size": AT_LEAST_0,  # 0 = the task's default size
    "data.val_fraction": FRACTION_BELOW_1,
    "data.batch_size": AT_LEAST_1,
    "data.val_batch_size": AT_LEAST_0,  # 0 = 2 x batch_size
    "data.workers": Range(-1),  # -1 = automatic
    "data.limit_train": AT_LEAST_0,
    "data.limit_val": AT_LEAST_0,
    "optim.lr": POSITIVE,
    "optim.momentum": FRACTION_BELOW_1,
    "optim.weight_decay": AT_LEAST_0,
    "optim.betas": FRACTION_BELOW_1,
    "optim.backbone_lr_mult": AT_LEAST_0,  # 0 = a frozen backbone, by choice
    "scheduler.warmup_epochs": AT_LEAST_0,
    "scheduler.warmup_start_factor": PROBABILITY,
    "scheduler.warmup_bias_lr": AT_LEAST_0,
    "scheduler.warmup_momentum": FRACTION_BELOW_1,
    "scheduler.min_lr_ratio": PROBABILITY,
    "scheduler.step_size": AT_LEAST_1,
    "scheduler.milestones": AT_LEAST_0,
    "scheduler.milestone_fractions": OPEN_UNIT,
    "scheduler.gamma": POSITIVE,
    "scheduler.power": POSITIVE,
    "scheduler.pct_start": OPEN_UNIT,  # onecycle divides by pct_start and by 1 - pct_start
    "train.epochs": AT_LEAST_1,
    "train.accumulate": AT_LEAST_1,
    "train.nominal_batch_size": AT_LEAST_0,  # 0 = off
    "train.clip_grad_norm": AT_LEAST_0,  # 0 = off
    "train.ema_decay": OPEN_UNIT,
    "train.ema_tau": POSITIVE,
    "train.label_smoothing": FRACTION_BELOW_1,
    "train.early_stop_patience": AT_LEAST_0,  # 0 = off
    "train.val_interval": AT_LEAST_1,
    "train.aux_loss_weight": AT_LEAST_0,
    "run.save_period": AT_LEAST_0,  # 0 = off
    "classify.augment.hflip": PROBABILITY,
    "classify.augment.scale": POSITIVE,
    "classify.augment.color_jitter": AT_LEAST_0,
    "classify.augment.random_erasing": PROBABILITY,
    "classify.augment.padding": Range(-1),  # -1 = round(img_size / 8)
    "classify.augment.mixup": AT_LEAST_0,  # Beta-distribution alphas; 0 = off
    "classify.augment.cutmix": AT_LEAST_0,
    "detect.augment.hflip": PROBABILITY,
    "detect.augment.mosaic": PROBABILITY,
    "detect.augment.close_mosaic": AT_LEAST_0,
    "detect.augment.mixup": AT_LEAST_0,
    "detect.augment.hsv_h": PROBABILITY,
    "detect.augment.hsv_s": PROBABILITY,  # gains 1 +- s: above 1 they could turn negative
    "detect.augment.hsv_v": PROBABILITY,
    "detect.augment.degrees": AT_LEAST_0,
    "detect.augment.translate": PROBABILITY,
    "detect.augment.affine_scale": FRACTION_BELOW_1,  # zoom 1 +- s must stay positive
    "detect.augment.shear": AT_LEAST_0,
    "detect.augment.photometric": PROBABILITY,
    "detect.augment.zoom_out": PROBABILITY,
    "detect.augment.iou_crop": PROBABILITY,
    "segment.dice_weight": AT_LEAST_0,
    "segment.focal_gamma": AT_LEAST_0,
    "segment.class_weights": AT_LEAST_0,
    "segment.eval_size": AT_LEAST_0,  # 0 = the original size
    "segment.augment.hflip": PROBABILITY,
    "segment.augment.vflip": PROBABILITY,
    "segment.augment.scale": POSITIVE,
    "segment.augment.color_jitter": AT_LEAST_0,
    "gan.n_critic": AT_LEAST_1,
    "gan.generator.lr": POSITIVE,
    "gan.generator.betas": Range(0, 1, open_high=True),
    "gan.generator.clip_grad_norm": AT_LEAST_0,
    "gan.discriminator.lr": POSITIVE,
    "gan.discriminator.betas": Range(0, 1, open_high=True),
    "gan.discriminator.clip_grad_norm": AT_LEAST_0,
    "siamese.embedding_dim": AT_LEAST_1,
    "siamese.margin": AT_LEAST_0,
    "siamese.temperature": POSITIVE,
    "siamese.instance_weight": AT_LEAST_0,  # 0 = off
    "siamese.heldout_classes": AT_LEAST_0,
    "siamese.eval_pairs": AT_LEAST_1,
    "siamese.retrieval_k": AT_LEAST_1,
    "siamese.augment.hflip": PROBABILITY,
    "siamese.augment.padding": Range(-1),  # -1 = round(img_size / 8)
    "siamese.augment.degrees": AT_LEAST_0,
    "siamese.augment.shear": AT_LEAST_0,
    "siamese.augment.affine_scale": FRACTION_BELOW_1,  # zoom 1 +- s must stay positive
    "siamese.augment.elastic_alpha": AT_LEAST_0,
    "siamese.augment.elastic_sigma": POSITIVE,
    "siamese.augment.dilate": PROBABILITY,
    "video.frames": AT_LEAST_1,
    "video.stride": AT_LEAST_1,
    "video.clips_per_video": AT_LEAST_1,
    "video.synthetic_train": AT_LEAST_1,
    "video.synthetic_val": AT_LEAST_1,
    "video.augment.hflip": PROBABILITY,
    "video.augment.scale": OPEN_UNIT_OR_1,
}


def _check_range(key: str, value: Any, allowed: Range) -> None:
    if not allowed.contains(value):
        raise ConfigError(f"{key}: {value!r} is out of range; it must be {allowed}")


def validate_config(config: Config) -> None:
    """Raise ConfigError (naming the dotted key and the value) for the first value the run cannot use."""
    for key, allowed in RANGES.items():
        value = get_value(config, key)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            for index, item in enumerate(value):
                _check_range(f"{key}[{index}]", item, allowed)
        else:
            _check_range(key, value, allowed)
    _check_relations(config)


def _check_relations(config: Config) -> None:
    """Constraints between values, or that depend on the task."""
    for key in ("classify.augment.scale", "segment.augment.scale", "video.augment.scale"):
        low, high = get_value(config, key)
        if low > high:
            raise ConfigError(f"{key}: {[low, high]!r} must be [low, high] with low <= high")
    cache = config.data.cache
    if not isinstance(cache, bool) and cache not in ("auto", "ram"):
        raise ConfigError(f"data.cache: {cache!r} is not one of 'auto', 'ram', false (or true, as 'ram')")
    size = config.data.img_size
    if config.task == "detect" and size % DETECTION_STRIDE:
        raise ConfigError(f"data.img_size: {size} must be a multiple of {DETECTION_STRIDE} for detection "
                          f"(the largest network stride)")
