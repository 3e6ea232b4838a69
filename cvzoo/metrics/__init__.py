"""Metrics: classification (top-k, P/R/F1, ROC), detection (VOC AP, COCO AP/AR), plots.

Names are resolved lazily so that ``import cvzoo.metrics`` does no work:
``from cvzoo.metrics import coco_eval`` imports only :mod:`cvzoo.metrics.coco`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    # detection
    "coco_eval": "cvzoo.metrics.coco",
    "CocoFormatError": "cvzoo.metrics.coco",
    "voc_ap": "cvzoo.metrics.voc",
    "voc_eval": "cvzoo.metrics.voc",
    "VOCFormatError": "cvzoo.metrics.voc",
    "DetectionEvaluator": "cvzoo.metrics.detection",
    "DetectionInputError": "cvzoo.metrics.detection",
    "DetectionCurves": "cvzoo.metrics.detection_curves",
    "detection_confusion_matrix": "cvzoo.metrics.detection_confusion",
    "plot_pr_curve": "cvzoo.metrics.plots_detection",
    "plot_confidence_curve": "cvzoo.metrics.plots_detection",
    "plot_detection_confusion_matrix": "cvzoo.metrics.plots_detection",
    # classification
    "ClassificationEvaluator": "cvzoo.metrics.classification",
    "topk_accuracy": "cvzoo.metrics.classification",
    "confusion_matrix": "cvzoo.metrics.classification",
    "precision_recall_f1": "cvzoo.metrics.classification",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'cvzoo.metrics' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
