"""Keys that moved into the task sections: an old recipe's error says where each one went, and a
configuration saved in a checkpoint before the move is read in the new layout.

Before the task sections (``cvzoo.config.tasks``) the tasks' options lived in ``data.augment`` (shared
by every task), ``data.rect_val``, ``metric`` (siamese) and, for segmentation, ``model.kwargs``. Those
keys are unknown now; the unknown-key error adds ``moved_hint(key)``.
"""

from __future__ import annotations

import copy
from dataclasses import fields
from typing import Any

from cvzoo.config.tasks import TASKS, ClassifyAugment, DetectAugment, SegmentAugment, SiameseAugment

# The fields of the former shared AugmentConfig, and the former MetricLearningConfig.
_OLD_AUGMENT = (
    "hflip", "scale", "color_jitter", "randaugment", "random_erasing", "padding", "mixup", "cutmix", "mosaic",
    "close_mosaic", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "affine_scale", "shear", "elastic_alpha",
    "elastic_sigma", "dilate", "multiscale",
)
_OLD_METRIC = ("embedding_dim", "loss", "margin", "temperature", "instance_weight", "heldout_classes",
               "eval_pairs", "retrieval_k")
# The segment task's options that were read from model.kwargs.
_OLD_SEGMENT_KWARGS = {
    "loss": "segment.loss", "dice_weight": "segment.dice_weight", "focal_gamma": "segment.focal_gamma",
    "class_weights": "segment.class_weights", "ignore_unknown": "segment.ignore_unknown",
    "allow_missing_masks": "segment.allow_missing_masks", "eval_size": "segment.eval_size",
    "vflip": "segment.augment.vflip",
}
_AUGMENT_SECTIONS = {"classify": ClassifyAugment, "detect": DetectAugment, "segment": SegmentAugment,
                     "siamese": SiameseAugment}


def _moved() -> dict[str, tuple[str, ...]]:
    moved: dict[str, tuple[str, ...]] = {
        "data.augment": tuple(f"{section}.augment" for section in _AUGMENT_SECTIONS),
        "data.rect_val": ("detect.rect_val",),
        "metric": ("siamese",),
    }
    for name in _OLD_AUGMENT:
        moved[f"data.augment.{name}"] = tuple(
            f"{section}.augment.{name}" for section, cls in _AUGMENT_SECTIONS.items()
            if name in {f.name for f in fields(cls)})
    moved.update({f"metric.{name}": (f"siamese.{name}",) for name in _OLD_METRIC})
    moved.update({f"model.kwargs.{name}": (new,) for name, new in _OLD_SEGMENT_KWARGS.items()})
    return moved


MOVED: dict[str, tuple[str, ...]] = _moved()


def moved_hint(key: str) -> str:
    """``"data.augment.mosaic moved to detect.augment.mosaic"`` for a key of the old layout (or a key
    under a moved section, e.g. a misspelt ``metric.*``), ``""`` for any other key."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        old = ".".join(parts[:end])
        if old in MOVED:
            new = MOVED[old]
            where = new[0] if len(new) == 1 else f"the task sections ({', '.join(new)})"
            return f"{old} moved to {where}"
    return ""


# The segment task read the classification default of the shared scale as "use (0.5, 2.0)".
_OLD_SCALE_DEFAULT = [0.08, 1.0]


def upgrade_saved_config(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's configuration (``config_to_dict`` of a ``Config``) in the current layout, so that
    checkpoints written before the task sections still evaluate, predict, export and resume.

    The shared ``data.augment`` goes to the section of the run's task (the fields that section has; the
    others were never read), ``data.rect_val`` to ``detect``, ``metric`` to ``siamese`` and the segment
    options out of ``model.kwargs``. A configuration in the current layout comes back unchanged.
    Recipes are not upgraded: an old key there is an error that names its new place.
    """
    saved = copy.deepcopy(saved)
    task = saved.get("task", "classify")
    data = saved.get("data") or {}
    augment, rect_val, metric = data.pop("augment", None), data.pop("rect_val", None), saved.pop("metric", None)
    own = TASKS[task].section if task in TASKS else None
    if augment is not None and own in _AUGMENT_SECTIONS:
        names = {f.name for f in fields(_AUGMENT_SECTIONS[own])}
        section = saved.setdefault(own, {}).setdefault("augment", {})
        section.update({key: value for key, value in augment.items() if key in names})
        if own == "segment" and list(section.get("scale", ())) == _OLD_SCALE_DEFAULT:
            del section["scale"]
    if rect_val is not None:
        saved.setdefault("detect", {})["rect_val"] = rect_val
    if metric is not None:
        saved.setdefault("siamese", {}).update(metric)
    kwargs = (saved.get("model") or {}).get("kwargs") or {}
    for name, new in _OLD_SEGMENT_KWARGS.items():
        if own == "segment" and name in kwargs:
            *path, key = new.split(".")
            node = saved
            for part in path:
                node = node.setdefault(part, {})
            node[key] = kwargs.pop(name)
    return saved


__all__ = ["MOVED", "moved_hint", "upgrade_saved_config"]
