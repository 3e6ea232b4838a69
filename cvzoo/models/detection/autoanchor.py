"""AutoAnchor: check that a detector's anchors fit a dataset's box sizes and evolve better ones.

The fit of an anchor ``a`` to a box ``b`` is the worst of the two side ratios, ``r = min(w_b / w_a,
w_a / w_b, h_b / h_a, h_a / h_b)`` in ``(0, 1]``; a box can be learnt from an anchor when ``r > 1 / t``
with ``t = anchor_t = 4`` (the YOLOv5 target rule: the ``(2 sigmoid)^2`` size decoding reaches at most 4x
the anchor). The *best possible recall* (BPR) is the fraction of boxes with at least one such anchor.

New anchors start from k-means on the boxes' ``(w, h)`` (YOLOv2, Redmon & Farhadi 2017, clustered box
shapes) and are refined by a genetic search: random multiplicative mutations are kept when they raise
the fitness, the mean best ratio over the boxes counting only ratios above ``1 / t`` (YOLOv5's
AutoAnchor). Anchors come back sorted by area, smallest first (finest level first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.vq import kmeans

# Boxes smaller than this (pixels) are too small to cluster meaningfully.
MIN_BOX_SIZE = 2.0


@dataclass(frozen=True)
class AnchorCheck:
    """Result of :func:`check_anchors`.

    Attributes:
        bpr: best possible recall of the current anchors.
        anchors_above_threshold: mean number of anchors per box with ``r > 1 / t``.
        new_anchors: ``[K, 2]`` evolved anchors sorted by area when the current BPR was below
            ``min_bpr`` and the new ones do better; else None.
        new_bpr: BPR of ``new_anchors`` (None when there are none).
    """

    bpr: float
    anchors_above_threshold: float
    new_anchors: np.ndarray | None = None
    new_bpr: float | None = None


def _as_wh(array: np.ndarray | Sequence[Sequence[float]], name: str) -> np.ndarray:
    wh = np.asarray(array, dtype=np.float64).reshape(-1, 2) if np.size(array) else np.zeros((0, 2))
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"{name} must be [N, 2] (w, h), got shape {np.shape(array)}")
    if len(wh) and (wh <= 0).any():
        raise ValueError(f"{name} must be positive widths and heights")
    return wh


def ratio_metric(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``[N, 2]`` box sizes x ``[K, 2]`` anchor sizes -> ``[N, K]`` worst side ratio ``r`` in ``(0, 1]``."""
    ratio = wh[:, None, :] / anchors[None, :, :]
    return np.minimum(ratio, 1.0 / ratio).min(axis=2)


def best_possible_recall(wh: np.ndarray, anchors: np.ndarray, anchor_t: float = 4.0) -> float:
    """Fraction of boxes that have an anchor with ``r > 1 / anchor_t``."""
    wh, anchors = _as_wh(wh, "wh"), _as_wh(anchors, "anchors")
    if len(wh) == 0:
        return 1.0
    return float((ratio_metric(wh, anchors).max(axis=1) > 1.0 / anchor_t).mean())


def anchor_fitness(wh: np.ndarray, anchors: np.ndarray, anchor_t: float = 4.0) -> float:
    """Mean over the boxes of the best ratio ``r``, counting only ratios above ``1 / anchor_t``."""
    best = ratio_metric(wh, anchors).max(axis=1)
    return float((best * (best > 1.0 / anchor_t)).mean())


def box_sizes_at(
    boxes: Sequence[np.ndarray], image_sizes: Sequence[tuple[int, int]], img_size: int = 640
) -> np.ndarray:
    """Box ``(w, h)`` as the network sees them after letterboxing to ``img_size`` (longest side).

    Args:
        boxes: per image, ``[N, 4]`` xyxy pixels of the original image.
        image_sizes: per image, ``(height, width)``.
        img_size: training resolution.

    Returns:
        ``[sum N, 2]`` sizes in pixels of the resized image.
    """
    sizes = []
    for image_boxes, (height, width) in zip(boxes, image_sizes):
        image_boxes = np.asarray(image_boxes, dtype=np.float64).reshape(-1, 4)
        scale = img_size / max(height, width)
        sizes.append((image_boxes[:, 2:] - image_boxes[:, :2]) * scale)
    return np.concatenate(sizes) if sizes else np.zeros((0, 2))


def kmean_anchors(
    wh: np.ndarray,
    num_anchors: int = 9,
    anchor_t: float = 4.0,
    generations: int = 1000,
    mutation_prob: float = 0.9,
    sigma: float = 0.1,
    seed: int = 0,
) -> np.ndarray:
    """Evolve ``num_anchors`` anchors for box sizes ``wh``: k-means, then a genetic refinement.

    Args:
        wh: ``[N, 2]`` box widths and heights in pixels (at the training resolution).
        num_anchors: anchors to return (levels x anchors per level, e.g. 9).
        anchor_t: size-ratio threshold of the target rule.
        generations: mutation rounds of the genetic search (0 = k-means only).
        mutation_prob: probability that one anchor side is mutated in a round.
        sigma: spread of the multiplicative mutations.
        seed: random seed (k-means initialisation and mutations).

    Returns:
        ``[num_anchors, 2]`` anchors sorted by area, smallest first.
    """
    wh = _as_wh(wh, "wh")
    wh = wh[(wh >= MIN_BOX_SIZE).all(axis=1)]
    if len(wh) < num_anchors:
        raise ValueError(f"kmean_anchors: need at least {num_anchors} boxes of >= {MIN_BOX_SIZE} px, got {len(wh)}")
    rng = np.random.default_rng(seed)
    # k-means on standardised sizes (width and height on one scale), as scipy's whiten does.
    scale = wh.std(axis=0)
    scale[scale == 0] = 1.0
    centroids, _ = kmeans(wh / scale, num_anchors, iter=30, rng=rng)
    anchors = centroids * scale
    if len(anchors) < num_anchors:  # k-means merged clusters (fewer distinct sizes than anchors)
        extra = wh[rng.choice(len(wh), num_anchors - len(anchors), replace=False)]
        anchors = np.concatenate((anchors, extra))
    best = anchor_fitness(wh, anchors, anchor_t)
    for _ in range(generations):
        factors = np.ones_like(anchors)
        while (factors == 1).all():  # mutate until something changes
            mutate = rng.random(anchors.shape) < mutation_prob
            factors = (mutate * rng.random(anchors.shape) * rng.standard_normal(anchors.shape) * sigma + 1)
            factors = factors.clip(0.3, 3.0)
        candidate = (anchors * factors).clip(min=MIN_BOX_SIZE)
        fitness = anchor_fitness(wh, candidate, anchor_t)
        if fitness > best:
            best, anchors = fitness, candidate
    return anchors[np.argsort(anchors.prod(axis=1))]


def check_anchors(
    wh: np.ndarray,
    anchors: np.ndarray,
    anchor_t: float = 4.0,
    min_bpr: float = 0.98,
    generations: int = 1000,
    seed: int = 0,
) -> AnchorCheck:
    """Report how well ``anchors`` fit the box sizes ``wh`` and evolve new ones when BPR < ``min_bpr``.

    Args:
        wh: ``[N, 2]`` box sizes in pixels at the training resolution (see :func:`box_sizes_at`).
        anchors: ``[K, 2]`` (or ``[L, A, 2]``) current anchors in pixels.
        anchor_t: size-ratio threshold.
        min_bpr: BPR below which new anchors are computed.
        generations: genetic-search rounds.
        seed: random seed.

    Returns:
        :class:`AnchorCheck`; apply ``new_anchors`` with the detector's ``set_anchors``.
    """
    wh, anchors = _as_wh(wh, "wh"), _as_wh(anchors, "anchors")
    if len(wh) == 0:
        return AnchorCheck(1.0, float(len(anchors)))
    ratios = ratio_metric(wh, anchors)
    bpr = best_possible_recall(wh, anchors, anchor_t)
    above = float((ratios > 1.0 / anchor_t).sum(axis=1).mean())
    if bpr >= min_bpr:
        return AnchorCheck(bpr, above)
    new = kmean_anchors(wh, len(anchors), anchor_t, generations, seed=seed)
    new_bpr = best_possible_recall(wh, new, anchor_t)
    if new_bpr <= bpr:
        return AnchorCheck(bpr, above)
    return AnchorCheck(bpr, above, new, new_bpr)
