"""PNG plots of classification results: confusion matrix and per-class PR curves.

Figures are drawn on matplotlib's Agg canvas directly (``matplotlib.figure.Figure``), so no GUI
backend is touched and the global ``pyplot`` state is left alone; matplotlib is imported only here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion_matrix(
    cm: np.ndarray, names: Sequence[str], path: str | Path, normalize: bool = False, title: str | None = None
) -> Path:
    """Save a confusion matrix heat map as PNG.

    Args:
        cm: ``[K, K]`` counts, rows true classes, columns predictions.
        names: the K class names (axis labels).
        path: output PNG (parent folders are created).
        normalize: divide each row by its support, so cells read as recall fractions.
        title: figure title; default "Confusion matrix" (+ " (normalised)").

    Returns:
        The written path.
    """
    cm = np.asarray(cm, dtype=np.float64)
    k = len(names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix shape {list(cm.shape)} does not match {k} class names")
    if normalize:
        support = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, support, out=np.zeros_like(cm), where=support > 0)
    # The figure grows with K so labels keep ~0.45 in per class; cell text only while it stays legible.
    side = float(np.clip(0.45 * k + 2.5, 5.0, 24.0))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(cm.max(), 1.0))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(names), rotation=45 if k <= 30 else 90, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels=list(names), fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or ("Confusion matrix (normalised)" if normalize else "Confusion matrix"))
    if k <= 30:
        threshold = (1.0 if normalize else cm.max()) / 2.0
        for i in range(k):
            for j in range(k):
                value = cm[i, j]
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7,
                        color="white" if value > threshold else "black")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_pr_curves(
    curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], names: Sequence[str], path: str | Path
) -> Path:
    """Save one-vs-rest precision-recall curves (from ``cvzoo.metrics.classification.pr_curves``) as PNG.

    The legend gives each class's average precision; above 20 classes the legend is left out and only
    the mean AP (in the title) is shown.
    """
    if len(curves) != len(names):
        raise ValueError(f"{len(curves)} curves but {len(names)} names")
    fig = _figure(7.0, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    aps = []
    for (precision, recall, _), name in zip(curves, names):
        ap = float(-np.sum(np.diff(recall) * precision[:-1]))
        aps.append(ap)
        ax.step(recall, precision, where="post", linewidth=1,
                label=f"{name} AP={ap:.3f}" if len(names) <= 20 else None)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"Precision-recall (mean AP {np.mean(aps):.3f})" if aps else "Precision-recall")
    if len(names) <= 20:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
