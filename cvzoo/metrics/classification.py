"""Classification metrics: top-k accuracy, confusion matrix, P/R/F1, one-vs-rest ROC AUC, PR curves.

Conventions follow scikit-learn so numbers can be compared one to one: the confusion matrix has true
classes in rows and predictions in columns; a precision/recall/F1 whose denominator is zero is 0;
macro averages weight every class equally (classes absent from the data included), weighted averages
weight by support. ROC AUC is the Mann-Whitney statistic (ties count one half), i.e. the area under
the trapezoidal ROC curve; a class with no positive or no negative sample has AUC ``nan`` and is left
out of the macro average.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata


def _as_numpy(x: torch.Tensor | np.ndarray | Sequence) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_targets(targets: np.ndarray, num_classes: int, n: int | None = None) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 1 or not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer class indices [N], got {targets.dtype} {list(targets.shape)}")
    if n is not None and len(targets) != n:
        raise ValueError(f"{n} predictions but {len(targets)} targets")
    if len(targets) and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must be in [0, {num_classes}), got range [{targets.min()}, {targets.max()}]")
    return targets.astype(np.int64)


def topk_accuracy(
    logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, ks: Sequence[int] = (1, 5)
) -> dict[int, float]:
    """Fraction of samples whose target is among the ``k`` highest scores.

    Args:
        logits: scores ``[N, K]`` (logits or probabilities; only their order matters).
        targets: class indices ``[N]``.
        ks: the ``k`` values, each in ``[1, K]``.

    Returns:
        ``{k: accuracy}`` with accuracies in ``[0, 1]``.
    """
    logits_t = torch.as_tensor(_as_numpy(logits))
    if logits_t.ndim != 2:
        raise ValueError(f"logits must be [N, K], got shape {list(logits_t.shape)}")
    n, num_classes = logits_t.shape
    targets_t = torch.as_tensor(_check_targets(_as_numpy(targets), num_classes, n))
    for k in ks:
        if not 1 <= k <= num_classes:
            raise ValueError(f"k={k} is out of range for {num_classes} classes")
    if n == 0:
        return {k: float("nan") for k in ks}
    top = logits_t.topk(max(ks), dim=1).indices  # [N, max_k]
    hits = top == targets_t[:, None]
    return {k: float(hits[:, :k].any(dim=1).double().mean()) for k in ks}


def confusion_matrix(
    preds: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, num_classes: int
) -> np.ndarray:
    """``cm[i, j]`` = number of samples of true class ``i`` predicted as ``j``; int64 ``[K, K]``."""
    targets = _check_targets(_as_numpy(targets), num_classes)
    preds = _check_targets(_as_numpy(preds), num_classes, len(targets))
    flat = np.bincount(targets * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def precision_recall_f1(cm: np.ndarray) -> dict[str, Any]:
    """Per-class and averaged precision, recall and F1 from a confusion matrix.

    Args:
        cm: ``[K, K]`` confusion matrix (rows true, columns predicted).

    Returns:
        dict with per-class arrays ``precision``, ``recall``, ``f1``, ``support`` (``[K]``), and floats
        ``macro_precision``, ``macro_recall``, ``macro_f1``, ``weighted_precision``, ``weighted_recall``,
        ``weighted_f1``, ``accuracy``.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got shape {list(cm.shape)}")
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    # F1 = 2TP / (2TP + FP + FN): the harmonic mean of P and R, defined (as 0) even when P or R is 0/0.
    f1 = _safe_div(2 * tp, predicted + support)
    total = support.sum()
    weights = support / total if total > 0 else np.zeros_like(support)
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "support": support.astype(np.int64),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
    }


def binary_roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of one binary problem via the rank-sum (Mann-Whitney U) statistic.

    Returns ``nan`` when ``labels`` holds only one class.
    """
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))  # average ranks: a tie counts one half
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_auc_ovr(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> tuple[np.ndarray, float]:
    """One-vs-rest ROC AUC per class and their macro average.

    Args:
        probs: class scores ``[N, K]`` (probabilities for the usual reading).
        targets: class indices ``[N]``.

    Returns:
        ``(per_class [K], macro)``; classes without positives or negatives are ``nan`` and skipped by
        the macro average (``nan`` if none is defined).
    """
    probs = _as_numpy(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [N, K], got shape {list(probs.shape)}")
    targets = _check_targets(_as_numpy(targets), probs.shape[1], probs.shape[0])
    per_class = np.array([binary_roc_auc(targets == k, probs[:, k]) for k in range(probs.shape[1])])
    defined = per_class[~np.isnan(per_class)]
    return per_class, float(defined.mean()) if defined.size else float("nan")


def binary_pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve of one binary problem, one point per distinct score.

    Returns:
        ``precision [T+1]``, ``recall [T+1]`` (decreasing, ending at the point (recall 0, precision 1)),
        ``thresholds [T]`` (increasing distinct scores). With no positive sample recall is 1 throughout.
    """
    labels = np.asarray(labels).astype(np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]  # last index of each distinct score
    tps = np.cumsum(labels)[last_of_run]
    fps = last_of_run + 1 - tps
    precision = _safe_div(tps, tps + fps)
    recall = tps / tps[-1] if tps.size and tps[-1] > 0 else np.ones_like(tps)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], scores[last_of_run][::-1]


def pr_curves(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> list[tuple]:
    """One-vs-rest precision-recall curves: ``[(precision, recall, thresholds)] * K`` (see ``binary_pr_curve``)."""
    probs = _as_numpy(probs)
    targets = _check_targets(_as_numpy(targets), probs.shape[1], probs.shape[0])
    return [binary_pr_curve(targets == k, probs[:, k]) for k in range(probs.shape[1])]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Step-wise area under a PR curve from ``binary_pr_curve``: ``sum_n (R_n - R_{n+1}) P_n``."""
    return float(-np.sum(np.diff(recall) * precision[:-1]))


class ClassificationEvaluator:
    """Accumulates predictions batch by batch and computes every classification metric at the end.

    Counts (confusion matrix, top-k hits) are exact integers; softmax probabilities are stored for
    ROC AUC and PR curves (``store_probs=False`` saves that memory and reports AUC as ``nan``).
    For DDP, gather each rank's ``state()`` (e.g. ``torch.distributed.all_gather_object``) and
    ``merge`` them into one evaluator.

    Args:
        num_classes: K.
        class_names: names for ``per_class``; default ``"0" .. "K-1"``.
        store_probs: keep probabilities for AUC.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, store_probs: bool = True) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        self.store_probs = store_probs
        self.ks = (1, 5) if num_classes >= 5 else (1,)
        self.reset()

    def reset(self) -> None:
        self.cm = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.topk_hits = np.zeros(len(self.ks), dtype=np.int64)
        self.count = 0
        self._probs: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add a batch: ``logits [B, K]`` (pre-softmax), ``targets [B]`` class indices."""
        logits = torch.as_tensor(logits)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"logits must be [B, {self.num_classes}], got shape {list(logits.shape)}")
        targets_np = _check_targets(_as_numpy(targets).reshape(-1), self.num_classes, logits.shape[0])
        targets_t = torch.as_tensor(targets_np, device=logits.device)
        top = logits.topk(max(self.ks), dim=1).indices
        hits = top == targets_t[:, None]
        self.topk_hits += np.array([int(hits[:, :k].any(dim=1).sum()) for k in self.ks], dtype=np.int64)
        preds = top[:, 0].cpu().numpy()
        self.cm += np.bincount(
            targets_np * self.num_classes + preds, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)
        self.count += logits.shape[0]
        if self.store_probs:
            dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
            self._probs.append(logits.to(dtype).softmax(dim=1).cpu().numpy())
            self._targets.append(targets_np)

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the evaluator: counts and stored probabilities (numpy)."""
        probs = np.concatenate(self._probs) if self._probs else np.zeros((0, self.num_classes), np.float32)
        targets = np.concatenate(self._targets) if self._targets else np.zeros(0, np.int64)
        return {
            "num_classes": self.num_classes,
            "ks": self.ks,
            "confusion_matrix": self.cm.copy(),
            "topk_hits": self.topk_hits.copy(),
            "count": self.count,
            "probs": probs,
            "targets": targets,
        }

    def merge(self, other: ClassificationEvaluator | dict[str, Any]) -> ClassificationEvaluator:
        """Add another evaluator's (or ``state()``'s) counts and probabilities into this one."""
        state = other.state() if isinstance(other, ClassificationEvaluator) else other
        if state["num_classes"] != self.num_classes:
            raise ValueError(f"cannot merge {state['num_classes']}-class state into {self.num_classes} classes")
        self.cm += state["confusion_matrix"]
        self.topk_hits += state["topk_hits"]
        self.count += int(state["count"])
        if self.store_probs:
            if len(state["targets"]) != state["count"]:
                raise ValueError("merged state holds no probabilities (store_probs=False); AUC would be wrong")
            self._probs.append(state["probs"])
            self._targets.append(state["targets"])
        return self

    def compute(self) -> dict[str, Any]:
        """Metrics over everything seen so far.

        Returns:
            ``top1`` (and ``top5`` when K >= 5) fractions; macro ``precision``, ``recall``, ``f1``;
            ``weighted_precision``, ``weighted_recall``, ``weighted_f1``; ``auc`` (macro one-vs-rest);
            ``confusion_matrix`` (int64 ``[K, K]``); ``per_class``: one dict per class with ``name``,
            ``precision``, ``recall``, ``f1``, ``support``, ``auc``; ``num_samples``.
        """
        prf = precision_recall_f1(self.cm)
        auc_per_class, auc = np.full(self.num_classes, np.nan), float("nan")
        if self.store_probs and self.count:
            state = self.state()
            auc_per_class, auc = roc_auc_ovr(state["probs"], state["targets"])
        result: dict[str, Any] = {}
        for k, hits in zip(self.ks, self.topk_hits):
            result[f"top{k}"] = float(hits / self.count) if self.count else float("nan")
        result.update(
            precision=prf["macro_precision"],
            recall=prf["macro_recall"],
            f1=prf["macro_f1"],
            weighted_precision=prf["weighted_precision"],
            weighted_recall=prf["weighted_recall"],
            weighted_f1=prf["weighted_f1"],
            auc=auc,
            confusion_matrix=self.cm.copy(),
            num_samples=self.count,
        )
        result["per_class"] = [
            {
                "name": name,
                "precision": float(prf["precision"][i]),
                "recall": float(prf["recall"][i]),
                "f1": float(prf["f1"][i]),
                "support": int(prf["support"][i]),
                "auc": float(auc_per_class[i]),
            }
            for i, name in enumerate(self.class_names)
        ]
        return result

    def pr_curves(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per-class PR curves of the stored probabilities (needs ``store_probs=True``)."""
        if not self.store_probs:
            raise ValueError("pr_curves needs store_probs=True")
        state = self.state()
        return pr_curves(state["probs"], state["targets"])
