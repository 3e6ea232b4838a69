"""PNG plots of detection metrics: PR curves, F1/P/R-confidence curves, confusion matrix.

matplotlib is imported inside each function and figures are drawn on an Agg canvas directly
(no pyplot, no global backend switch), so importing cvzoo stays cheap and plotting works headless.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cvzoo.metrics.detection_curves import DetectionCurves

_MAX_LEGEND_CLASSES = 20


def _figure(width: float = 9.0, height: float = 6.0) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), tight_layout=True)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path


def plot_pr_curve(curves: DetectionCurves, path: str | Path) -> Path:
    """Precision-recall curve per class at IoU 0.5 (COCO interpolation) and their mean.

    Args:
        curves: from :meth:`DetectionEvaluator.curves`.
        path: output PNG.

    Returns:
        The written path.
    """
    fig, ax = _figure()
    has_gt = curves.num_gt > 0
    show_legend = int(has_gt.sum()) <= _MAX_LEGEND_CLASSES
    for k in np.flatnonzero(has_gt):
        label = f"{curves.class_names[k]} {curves.pr_precision[k].mean():.3f}" if show_legend else None
        ax.plot(curves.pr_recall, curves.pr_precision[k], linewidth=1, label=label)
    if has_gt.any():
        mean = curves.pr_precision[has_gt].mean(axis=0)
        ax.plot(curves.pr_recall, mean, linewidth=3, color="blue", label=f"all classes {mean.mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-Recall Curve")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_confidence_curve(curves: DetectionCurves, path: str | Path, metric: str = "F1") -> Path:
    """``metric`` (``"F1"``, ``"P"`` or ``"R"``) against the confidence threshold, per class and mean.

    Args:
        curves: from :meth:`DetectionEvaluator.curves`.
        path: output PNG.
        metric: which curve.

    Returns:
        The written path.
    """
    values = {"F1": curves.f1, "P": curves.precision, "R": curves.recall}
    if metric not in values:
        raise ValueError(f"metric must be one of {sorted(values)}, got {metric!r}")
    data = values[metric]
    names = {"F1": "F1", "P": "Precision", "R": "Recall"}
    fig, ax = _figure()
    has_gt = curves.num_gt > 0
    show_legend = int(has_gt.sum()) <= _MAX_LEGEND_CLASSES
    for k in np.flatnonzero(has_gt):
        ax.plot(curves.confidence, data[k], linewidth=1, label=curves.class_names[k] if show_legend else None)
    if has_gt.any():
        mean = data[has_gt].mean(axis=0)
        best = curves.best_index
        ax.plot(curves.confidence, mean, linewidth=3, color="blue",
                label=f"all classes {mean[best]:.2f} at {curves.confidence[best]:.3f}")
    ax.set(xlabel="Confidence", ylabel=names[metric], xlim=(0, 1), ylim=(0, 1.01),
           title=f"{names[metric]}-Confidence Curve")
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_detection_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path, normalize: bool = True
) -> Path:
    """Heat map of a detection confusion matrix (rows predicted, columns true, last = background).

    Args:
        matrix: ``[K + 1, K + 1]`` counts.
        class_names: the ``K`` names.
        path: output PNG.
        normalize: divide each column (true class) by its total.

    Returns:
        The written path.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    k = len(class_names)
    if matrix.shape != (k + 1, k + 1):
        raise ValueError(f"matrix must be [{k + 1}, {k + 1}] for {k} classes, got {list(matrix.shape)}")
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=0, keepdims=True), 1e-9)
    labels = [*class_names, "background"]
    size = max(6.0, 0.45 * (k + 1) + 2)
    fig, ax = _figure(size + 1, size)
    image = ax.imshow(matrix, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(k + 1)
    ax.set_xticks(ticks, labels, rotation=90, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    if k + 1 <= 30:
        threshold = matrix.max() / 2 if matrix.size else 0
        for i in range(k + 1):
            for j in range(k + 1):
                if matrix[i, j] > 0:
                    text = f"{matrix[i, j]:.2f}" if normalize else f"{int(matrix[i, j])}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if matrix[i, j] > threshold else "black")
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix" + (" (normalized)" if normalize else ""))
    return _save(fig, path)
