"""Verification (same / different) and retrieval metrics for embedding models."""

from __future__ import annotations

import numpy as np

from cvzoo.metrics.classification import binary_roc_auc


def pair_distances(embeddings: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Euclidean distance of each ``pairs[i] = (a, b)`` of rows of ``embeddings [N, D]``."""
    diff = embeddings[pairs[:, 0]] - embeddings[pairs[:, 1]]
    return np.sqrt((diff * diff).sum(axis=1))


def roc_curve(same: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates, thresholds) of the rule "same if distance <= t"."""
    same = np.asarray(same, bool)
    order = np.argsort(distances, kind="mergesort")
    d, s = distances[order], same[order]
    distinct = np.r_[np.flatnonzero(np.diff(d)), len(d) - 1]  # last index of each distance value
    tp = np.cumsum(s)[distinct]
    fp = np.cumsum(~s)[distinct]
    tpr = np.r_[0.0, tp / max(1, s.sum())]
    fpr = np.r_[0.0, fp / max(1, (~s).sum())]
    return fpr, tpr, np.r_[-np.inf, d[distinct]]


def verification_metrics(same: np.ndarray, distances: np.ndarray) -> dict[str, float]:
    """ROC AUC, equal error rate and the accuracy at the best distance threshold.

    ``same[i]`` says whether pair ``i`` shows one identity; smaller distances must mean "same".
    The EER is where the false-accept rate equals the false-reject rate (linear interpolation
    between ROC points).
    """
    same = np.asarray(same, bool)
    distances = np.asarray(distances, np.float64)
    auc = binary_roc_auc(same, -distances)
    fpr, tpr, thresholds = roc_curve(same, distances)
    fnr = 1 - tpr
    i = int(np.flatnonzero(fnr <= fpr)[0]) if np.any(fnr <= fpr) else len(fpr) - 1
    if i == 0:
        eer = float(fpr[0])
    else:  # the crossing lies between points i-1 and i
        d0, d1 = fnr[i - 1] - fpr[i - 1], fnr[i] - fpr[i]
        t = d0 / (d0 - d1) if d0 != d1 else 0.0
        eer = float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))
    n_pos, n_neg = same.sum(), (~same).sum()
    accuracies = (tpr * n_pos + (1 - fpr) * n_neg) / max(1, len(same))
    best = int(np.argmax(accuracies))
    return {"auc": float(auc), "eer": eer, "accuracy": float(accuracies[best]),
            "threshold": float(thresholds[best])}


def retrieval_topk(embeddings: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Leave-one-out nearest-neighbour retrieval: the fraction of queries whose ``k`` nearest other
    items contain one of the same label (recall@k)."""
    embeddings = np.asarray(embeddings, np.float64)
    labels = np.asarray(labels)
    sq = (embeddings**2).sum(1)
    dist = sq[:, None] + sq[None, :] - 2 * embeddings @ embeddings.T
    np.fill_diagonal(dist, np.inf)
    order = np.argsort(dist, axis=1, kind="mergesort")
    hits = labels[order] == labels[:, None]
    return {f"recall@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}
