"""IoU of run-length encoded masks computed on the runs, for many (a, b) pairs at once.

The intersection of masks A and B is the sum, over the foreground runs ``[s, e)`` of B, of the
number of A's foreground pixels in ``[s, e)``, i.e. ``F_A(e) - F_A(s)`` with ``F_A(x)`` the count of
A's foreground pixels before position ``x``. ``F_A`` is a binary search in A's run starts plus a
clipped difference, so every pair costs ``O(runs of B * log(runs))`` and nothing is decoded. To do
all pairs in one call, the masks of a batch are laid end to end on one global axis (mask ``i``
starting at the sum of the pixel counts before it) so that one ``searchsorted`` serves every pair;
each pair probes the mask with fewer runs against the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cvzoo.ops._rle_codec import local_index, segment_ids
from cvzoo.ops._rle_merge import merge_pairs


@dataclass(frozen=True)
class RunIntervals:
    """Foreground runs of a batch of masks on one global axis (zero-length runs dropped).

    Mask ``i`` occupies global positions ``base[i] .. base[i] + h * w - 1`` (its pixels in
    column-major order), so the runs of all masks are one increasing sequence.

    Attributes:
        global_start: ``[I]`` first pixel of each run, strictly increasing.
        length: ``[I]`` run length (> 0).
        offsets: ``[N+1]`` runs of mask ``i`` are ``offsets[i]:offsets[i + 1]``.
        base: ``[N]`` global position of each mask's first pixel.
        covered_before: ``[I]`` foreground pixels of all runs before this one.
    """

    global_start: np.ndarray
    length: np.ndarray
    offsets: np.ndarray
    base: np.ndarray
    covered_before: np.ndarray


def foreground_runs(offsets: np.ndarray) -> np.ndarray:
    """``[C]`` bool: the run is a foreground (odd) run of its mask."""
    odd = np.zeros(int(offsets[-1]), dtype=bool)
    odd[1::2] = True
    # The global parity, flipped for the runs of masks that start at an odd position.
    return odd ^ np.repeat((offsets[:-1] & 1).astype(bool), np.diff(offsets))


def run_intervals(counts: np.ndarray, offsets: np.ndarray, heights: np.ndarray, widths: np.ndarray) -> RunIntervals:
    """The foreground runs of the masks ``(counts, offsets)``; each mask's counts must add up to ``h * w``.

    Because they do, the running sum of all counts is already the global position of every run end.
    """
    base = np.r_[0, np.cumsum(heights * widths)][:-1]
    ends = np.cumsum(counts)
    fg = np.flatnonzero(foreground_runs(offsets) & (counts > 0))
    length = counts[fg]
    return RunIntervals(
        global_start=ends[fg] - length,
        length=length,
        offsets=np.searchsorted(fg, offsets, side="left"),
        base=base,
        covered_before=np.cumsum(length) - length,
    )


class MaskBatch(Protocol):
    """What :func:`iou_pairs` needs of a batch (``cvzoo.ops.masks.RleBatch``)."""

    counts: np.ndarray
    offsets: np.ndarray
    heights: np.ndarray
    widths: np.ndarray

    @property
    def intervals(self) -> RunIntervals: ...

    def take(self, index: np.ndarray) -> MaskBatch: ...

    def areas(self) -> np.ndarray: ...

    def bboxes(self) -> np.ndarray: ...


def _covered_below(runs: RunIntervals, x: np.ndarray) -> np.ndarray:
    """Foreground pixels at global positions ``< x``."""
    k = np.searchsorted(runs.global_start, x, side="right") - 1
    kk = np.maximum(k, 0)
    inside = np.minimum(x - runs.global_start[kk], runs.length[kk]) if runs.length.size else np.zeros_like(x)
    covered = runs.covered_before[kk] + inside if runs.length.size else inside
    return np.where(k >= 0, covered, 0)


def _intersections(table: RunIntervals, table_idx: np.ndarray, probe: RunIntervals, probe_idx: np.ndarray) -> np.ndarray:
    """``[P]`` intersection areas of masks ``table[table_idx[p]]`` and ``probe[probe_idx[p]]``."""
    num = np.diff(probe.offsets)[probe_idx]
    pair = np.repeat(np.arange(probe_idx.size), num)
    run = np.repeat(probe.offsets[:-1][probe_idx], num) + local_index(np.r_[0, np.cumsum(num)])
    shift = (table.base[table_idx] - probe.base[probe_idx])[pair]
    lo = probe.global_start[run] + shift
    hi = lo + probe.length[run]
    inside = _covered_below(table, hi) - _covered_below(table, lo)
    return np.bincount(pair, weights=inside, minlength=probe_idx.size).astype(np.int64)


def _inner_zero_run(batch: MaskBatch) -> np.ndarray:
    """``[N]`` bool: the mask has a zero-length run after its first."""
    zero = (batch.counts == 0) & (local_index(batch.offsets) >= 1)
    return np.bincount(segment_ids(batch.offsets)[zero], minlength=batch.heights.size) > 0


def _walked_counts(a: MaskBatch, b: MaskBatch) -> tuple[np.ndarray, np.ndarray]:
    """Intersection and union pixel counts as the reference's lockstep walk finds them.

    Where both masks have a zero-length run at the same place the reference's walk stops early
    (both remaining counts are zero, which it takes for the end) and counts only the pixels before
    it. The walk of ``rleMerge`` stops at the same step, so the areas of the walked intersection and
    union are the reference's counts. Only such rare, non-canonical pairs take this slower path.
    """
    totals = a.heights * a.widths
    sums = []
    for intersect in (True, False):
        counts, offsets = merge_pairs((a.counts, a.offsets), (b.counts, b.offsets), totals, intersect)
        odd = (local_index(offsets) % 2 == 1).astype(np.int64)
        sums.append(np.bincount(segment_ids(offsets), weights=counts * odd, minlength=totals.size).astype(np.int64))
    return sums[0], sums[1]


def iou_pairs(a: MaskBatch, ia: np.ndarray, b: MaskBatch, ib: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of the aligned pairs ``(a[ia[p]], b[ib[p]])`` with the COCO API's ``rleIou`` rules.

    Like the reference, only pairs whose boxes overlap are looked at (others are 0); such a pair of
    masks of different sizes is -1; a crowd pair is intersection / area of ``a``.

    Args:
        a, b: mask batches.  ia, ib: ``[P]`` indices into them.
        crowd: ``[P]`` bool, the ``b`` side is a crowd region.

    Returns:
        ``[P]`` float64.
    """
    ia, ib = np.asarray(ia, dtype=np.int64), np.asarray(ib, dtype=np.int64)
    box_a, box_b = a.bboxes()[ia], b.bboxes()[ib]
    w = np.minimum(box_a[:, 2] + box_a[:, 0], box_b[:, 2] + box_b[:, 0]) - np.maximum(box_a[:, 0], box_b[:, 0])
    h = np.minimum(box_a[:, 3] + box_a[:, 1], box_b[:, 3] + box_b[:, 1]) - np.maximum(box_a[:, 1], box_b[:, 1])
    overlap = (w > 0) & (h > 0)
    same_size = (a.heights[ia] == b.heights[ib]) & (a.widths[ia] == b.widths[ib])
    iou = np.where(overlap & ~same_size, -1.0, 0.0)
    todo = np.flatnonzero(overlap & same_size)
    if todo.size == 0:
        return iou
    runs_a, runs_b = a.intervals, b.intervals
    ta, tb = ia[todo], ib[todo]
    fewer_in_a = np.diff(runs_a.offsets)[ta] <= np.diff(runs_b.offsets)[tb]
    inter = np.zeros(todo.size, dtype=np.int64)
    pa = np.flatnonzero(fewer_in_a)
    pb = np.flatnonzero(~fewer_in_a)
    inter[pa] = _intersections(runs_b, tb[pa], runs_a, ta[pa])
    inter[pb] = _intersections(runs_a, ta[pb], runs_b, tb[pb])
    area_a, area_b = a.areas()[ta], b.areas()[tb]
    union = np.where(crowd[todo], area_a, area_a + area_b - inter)
    odd = np.flatnonzero(_inner_zero_run(a)[ta] & _inner_zero_run(b)[tb])
    if odd.size:
        inter[odd], walked_union = _walked_counts(a.take(ta[odd]), b.take(tb[odd]))
        union[odd] = np.where(crowd[todo][odd], area_a[odd], walked_union)
    # The reference divides by 1 when nothing intersects (also covers an empty crowd detection).
    union = np.where(inter == 0, 1, union)
    iou[todo] = inter / union
    return iou
