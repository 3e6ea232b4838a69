"""Pair and triplet sampling for Siamese networks (seeded, class-balanced)."""

from __future__ import annotations

import numpy as np


def _by_class(labels: np.ndarray) -> dict[int, np.ndarray]:
    labels = np.asarray(labels)
    groups = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    return {c: idx for c, idx in groups.items() if len(idx)}


def sample_pairs(labels: np.ndarray, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` index pairs ``[count, 2]``, half genuine (same class) and half impostor, and ``same [count]``.

    Genuine pairs pick a class uniformly then two distinct items; impostor pairs pick two distinct
    classes then one item of each, so every class weighs the same whatever its size.
    """
    groups = _by_class(labels)
    classes = [c for c, idx in groups.items() if len(idx) >= 2]
    if not classes or len(groups) < 2:
        raise ValueError("pair sampling needs at least two classes and a class with two items")
    rng = np.random.default_rng(seed)
    n_pos = count // 2
    pairs = np.empty((count, 2), np.int64)
    for i in range(n_pos):
        idx = groups[classes[rng.integers(len(classes))]]
        pairs[i] = rng.choice(idx, 2, replace=False)
    keys = list(groups)
    for i in range(n_pos, count):
        a, b = rng.choice(len(keys), 2, replace=False)
        pairs[i] = (rng.choice(groups[keys[a]]), rng.choice(groups[keys[b]]))
    same = np.zeros(count, bool)
    same[:n_pos] = True
    return pairs, same


def sample_triplets(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``[count, 3]`` (anchor, positive, negative) index triplets, classes drawn uniformly."""
    groups = _by_class(labels)
    classes = [c for c, idx in groups.items() if len(idx) >= 2]
    if not classes or len(groups) < 2:
        raise ValueError("triplet sampling needs at least two classes and a class with two items")
    rng = np.random.default_rng(seed)
    keys = list(groups)
    out = np.empty((count, 3), np.int64)
    for i in range(count):
        c = classes[rng.integers(len(classes))]
        anchor, positive = rng.choice(groups[c], 2, replace=False)
        others = [k for k in keys if k != c]
        out[i] = (anchor, positive, rng.choice(groups[others[rng.integers(len(others))]]))
    return out
