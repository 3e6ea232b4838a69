"""Which samples of a split a run keeps under ``data.limit_train`` / ``data.limit_val``.

Smoke runs, tests and benchmarks train and validate on a small part of a dataset. The part is fixed (no
random draw: the same limit on the same data gives the same samples, whatever the seed) and is the head of
the split: the first samples, or, where each sample has one class, the head of each class in turn, so a
subset of a sorted image folder does not hold the first class only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def limited_indices(count: int, limit: int, labels: Sequence[int] | np.ndarray | None = None) -> list[int] | None:
    """The indices, in dataset order, of the samples kept when at most ``limit`` of ``count`` are.

    Args:
        count: the split's number of samples.
        limit: how many to keep; 0 (or a limit not below ``count``) keeps all.
        labels: each sample's class (``count`` of them), or None where a sample has no single class
            (detection images, segmentation masks).

    Returns:
        None when every sample is kept. Without labels the first ``limit`` indices; with labels the first
        ``limit`` of the order that takes the first sample of every class, then the second of every class,
        and so on (classes by label), so each class keeps ``limit / classes`` samples, or all it has.
    """
    if limit < 0:
        raise ValueError(f"a sample limit cannot be negative, got {limit}")
    if limit == 0 or limit >= count:
        return None
    if labels is None:
        return list(range(limit))
    labels = np.asarray(labels)
    if len(labels) != count:
        raise ValueError(f"{len(labels)} labels for {count} samples")
    per_class = [np.flatnonzero(labels == label) for label in np.unique(labels)]
    # Round-robin: the i-th sample of every class that has one, for i = 0, 1, 2...
    order = [int(members[i]) for i in range(max(len(m) for m in per_class)) for members in per_class
             if i < len(members)]
    return sorted(order[:limit])
