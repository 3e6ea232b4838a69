"""Semantic segmentation metrics from one pixel confusion matrix (rows = true class, columns = predicted).

With ``n_ij`` the number of pixels of class ``i`` predicted as ``j``, ``t_i = sum_j n_ij`` the pixels of
class ``i`` and ``p_j = sum_i n_ij`` the pixels predicted as ``j`` (Long et al., 2015, §5 define the first
four):

* pixel accuracy        ``sum_i n_ii / sum_i t_i``
* mean (class) accuracy ``1/K' sum_i n_ii / t_i``
* IoU of class ``i``    ``n_ii / (t_i + p_i - n_ii)``; mean IoU is their mean
* frequency-weighted IoU ``sum_i t_i IoU_i / sum_i t_i``
* Dice (F1) of class ``i`` ``2 n_ii / (t_i + p_i)``; mean Dice is their mean

Pixels whose target is the ignore label (255) are left out everywhere. A ratio whose denominator is
zero is undefined (``nan``) and left out of the means: a class that is neither present nor predicted
does not count (``K'`` is the number of defined terms). A class predicted but absent has IoU 0 and
counts. The matrix accumulates across batches (``update``) and across DDP ranks (``state``/``merge``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = 255


def confusion_matrix(preds: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``[K, K]`` int64 pixel counts (rows true, columns predicted) of one pair of class maps.

    Args:
        preds: predicted classes, any shape, values in ``[0, K)``.
        targets: true classes, same shape, values in ``[0, K)`` or ``ignore_index``.
        num_classes: K.
        ignore_index: target value left out.

    Raises:
        ValueError: different shapes, or a value out of range (naming the offending value).
    """
    preds_t = torch.as_tensor(preds).reshape(-1).long()
    targets_t = torch.as_tensor(targets).reshape(-1).long().to(preds_t.device)
    if torch.as_tensor(preds).shape != torch.as_tensor(targets).shape:
        raise ValueError(
            f"prediction shape {list(torch.as_tensor(preds).shape)} differs from target shape "
            f"{list(torch.as_tensor(targets).shape)}"
        )
    keep = targets_t != ignore_index
    preds_t, targets_t = preds_t[keep], targets_t[keep]
    if targets_t.numel():
        bad_t = targets_t[(targets_t < 0) | (targets_t >= num_classes)]
        if bad_t.numel():
            raise ValueError(f"target value {int(bad_t[0])} is outside [0, {num_classes}) and not {ignore_index}")
        bad_p = preds_t[(preds_t < 0) | (preds_t >= num_classes)]
        if bad_p.numel():
            raise ValueError(f"predicted class {int(bad_p[0])} is outside [0, {num_classes})")
    # One bincount over the flattened (true, predicted) pair index: a K*K histogram in one pass.
    counts = torch.bincount(targets_t * num_classes + preds_t, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Every metric of the module docstring from a ``[K, K]`` confusion matrix.

    Returns:
        Scalars ``pixel_acc``, ``mean_acc``, ``mIoU``, ``fwIoU``, ``mDice`` (floats; ``nan`` when no
        pixel was counted) and per-class arrays ``iou``, ``dice``, ``class_acc``, ``support`` (``[K]``).
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got shape {list(cm.shape)}")
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # t_i
    predicted = cm.sum(axis=0)  # p_i
    total = support.sum()
    iou = _ratio(tp, support + predicted - tp)
    dice = _ratio(2 * tp, support + predicted)
    class_acc = _ratio(tp, support)
    fw = float(np.nansum(support * np.nan_to_num(iou)) / total) if total > 0 else float("nan")
    return {
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": _nanmean(class_acc),
        "mIoU": _nanmean(iou),
        "fwIoU": fw,
        "mDice": _nanmean(dice),
        "iou": iou,
        "dice": dice,
        "class_acc": class_acc,
        "support": support.astype(np.int64),
    }


class SegmentationMetrics:
    """Accumulates a pixel confusion matrix over batches; mergeable across processes.

    Args:
        num_classes: K (background included).
        class_names: optional names (per-class keys and tables); default ``class0..``.
        ignore_index: target label left out (255).

    Example:
        >>> metrics = SegmentationMetrics(3)
        >>> metrics.update(logits.argmax(1), masks)        # [B, H, W] each
        >>> metrics.compute()["mIoU"]
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        names = list(class_names) if class_names is not None else [f"class{i}" for i in range(num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.num_classes, self.class_names, self.ignore_index = num_classes, names, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, preds: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> None:
        """Add the pixels of predicted class maps ``preds`` and true maps ``targets`` (same shape)."""
        self.matrix += confusion_matrix(preds, targets, self.num_classes, self.ignore_index)

    def state(self) -> np.ndarray:
        return self.matrix.copy()

    def merge(self, state: np.ndarray) -> None:
        """Add another accumulator's ``state()`` (e.g. from another DDP rank)."""
        state = np.asarray(state)
        if state.shape != self.matrix.shape:
            raise ValueError(f"cannot merge a {list(state.shape)} matrix into {list(self.matrix.shape)}")
        self.matrix += state.astype(np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def compute(self) -> dict[str, Any]:
        """Scalars (``pixel_acc``, ``mean_acc``, ``mIoU``, ``fwIoU``, ``mDice``), the per-class arrays, a
        ``per_class`` row list, the ``confusion_matrix`` and a printable ``table``."""
        result = metrics_from_confusion(self.matrix)
        per_class = []
        for i, name in enumerate(self.class_names):
            row = {"class": name, "iou": float(result["iou"][i]), "dice": float(result["dice"][i]),
                   "acc": float(result["class_acc"][i]), "support": int(result["support"][i])}
            per_class.append(row)
        result["per_class"] = per_class
        result["confusion_matrix"] = self.matrix.copy()
        result["table"] = format_table(per_class, result)
        return result


def format_table(per_class: list[dict[str, Any]], scalars: dict[str, Any]) -> str:
    """A plain-text per-class table plus the summary line (what ``cvzoo val`` prints)."""
    width = max([5] + [len(row["class"]) for row in per_class])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'acc':>7}  {'pixels':>10}"]
    for row in per_class:
        lines.append(f"{row['class']:<{width}}  {row['iou']:7.4f}  {row['dice']:7.4f}  {row['acc']:7.4f}  "
                     f"{row['support']:10d}")
    lines.append(f"mIoU {scalars['mIoU']:.4f}  pixel acc {scalars['pixel_acc']:.4f}  mean acc "
                 f"{scalars['mean_acc']:.4f}  fwIoU {scalars['fwIoU']:.4f}  mDice {scalars['mDice']:.4f}")
    return "\n".join(lines)


__all__ = ["IGNORE_INDEX", "SegmentationMetrics", "confusion_matrix", "format_table", "metrics_from_confusion"]
