"""Union and intersection of run-length encoded masks, step for step as the COCO API's ``rleMerge``.

For well-formed input (no zero-length run except possibly the first) the result is simply the
canonical RLE of the union or intersection. The reference walks both run lists in lockstep, though,
and an input with zero-length runs elsewhere (legal in an uncompressed RLE) leaves traces in its
output, which is then written into the compressed string; to give the same string for every input
the walk is reproduced exactly, as array operations over many pairs at once:

* a run list toggles its value at the end of every run but the last; these toggle *events* sit at
  the running sums of the counts, and several events of one list can share a position;
* each step of the reference's loop advances to the next event position and consumes at most one
  event of each list there, so steps are the distinct keys (position, k-th event at that position);
* after a step the merged value is recomputed and a run is written when it changed, and at the end;
* the walk ends at the image end, or earlier where both lists have a further event at the position
  of a step (both remaining counts are then zero, which the reference takes for the end).
"""

from __future__ import annotations

import numpy as np

from cvzoo.ops._rle_codec import local_index, segment_ids, segmented_cumsum


def _events(counts: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Toggle events ``(item, position, k, more)`` of a batch of run lists, sorted by item and position."""
    owner = segment_ids(offsets)
    position = segmented_cumsum(counts, owner)
    lengths = np.diff(offsets)
    event = local_index(offsets) < lengths[owner] - 1
    owner, position = owner[event], position[event]
    same = np.zeros(owner.size, dtype=bool)  # same item and position as the previous event
    same[1:] = (owner[1:] == owner[:-1]) & (position[1:] == position[:-1])
    starts = np.flatnonzero(~same)
    k = np.arange(owner.size) - np.repeat(starts, np.diff(np.r_[starts, owner.size]))
    more = np.zeros(owner.size, dtype=bool)
    more[:-1] = same[1:]
    return owner, position, k, more


def merge_pairs(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], totals: np.ndarray, intersect: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Merge item ``i`` of ``a`` with item ``i`` of ``b`` for every ``i``.

    Args:
        a, b: ``(counts, offsets)`` batches with the same number of items; the counts of item ``i``
            must sum to ``totals[i]`` in both.
        totals: ``[N]`` pixels per item (``h * w``).
        intersect: intersection instead of union.

    Returns:
        ``(counts, offsets)`` of the merged items.
    """
    num = totals.size
    if num == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)
    ev_a, ev_b = _events(*a), _events(*b)
    owner = np.concatenate((ev_a[0], ev_b[0], np.arange(num)))
    position = np.concatenate((ev_a[1], ev_b[1], totals))
    k = np.concatenate((ev_a[2], ev_b[2], np.zeros(num, dtype=np.int64)))
    more = np.concatenate((ev_a[3], ev_b[3], np.zeros(num, dtype=bool)))
    source = np.concatenate((np.full(ev_a[0].size, 1), np.full(ev_b[0].size, 2), np.zeros(num, dtype=np.int64)))
    # Only one step happens at the image end: further events there are never read.
    valid = (position < totals[owner]) | (k == 0)
    owner, position, k, more, source = owner[valid], position[valid], k[valid], more[valid], source[valid]
    order = np.lexsort((k, position, owner))
    owner, position, k, more, source = owner[order], position[order], k[order], more[order], source[order]
    new = np.r_[True, (owner[1:] != owner[:-1]) | (position[1:] != position[:-1]) | (k[1:] != k[:-1])]
    step = np.cumsum(new) - 1
    num_steps = int(step[-1]) + 1 if step.size else 0

    def per_step(flags: np.ndarray) -> np.ndarray:
        return np.bincount(step, weights=flags, minlength=num_steps) > 0

    toggle_a, toggle_b = per_step(source == 1), per_step(source == 2)
    stop = per_step((source == 1) & more) & per_step((source == 2) & more)
    step_owner, step_pos = owner[new], position[new]
    stop = stop.astype(np.int64)
    after_stop = (segmented_cumsum(stop, step_owner) - stop) > 0
    keep = ~after_stop
    step_owner, step_pos, toggle_a, toggle_b = step_owner[keep], step_pos[keep], toggle_a[keep], toggle_b[keep]
    value_a = segmented_cumsum(toggle_a.astype(np.int64), step_owner) & 1
    value_b = segmented_cumsum(toggle_b.astype(np.int64), step_owner) & 1
    value = (value_a & value_b) if intersect else (value_a | value_b)
    first = np.r_[True, step_owner[1:] != step_owner[:-1]]
    last = np.r_[step_owner[1:] != step_owner[:-1], True]
    previous = np.r_[0, value[:-1]]
    previous[first] = 0
    write = (value != previous) | last
    out_owner, out_pos = step_owner[write], step_pos[write]
    out_first = np.r_[True, out_owner[1:] != out_owner[:-1]]
    counts = np.where(out_first, out_pos, out_pos - np.r_[0, out_pos[:-1]])
    offsets = np.r_[0, np.cumsum(np.bincount(out_owner, minlength=num))]
    return counts.astype(np.int64), offsets
