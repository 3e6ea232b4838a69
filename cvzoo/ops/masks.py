"""COCO run-length encoded (RLE) masks in NumPy, equal to ``pycocotools.mask`` bit for bit.

A binary ``[H, W]`` mask is read in column-major (Fortran) order and stored as the lengths of its
alternating runs, the first run counting zeros (so it is 0 when the mask starts with a one). COCO
files hold either these ``counts`` as a list of ints ("uncompressed RLE", used for crowd regions)
or as the COCO API's compressed string (see :mod:`cvzoo.ops._rle_codec`). Here:

* :func:`rle_encode` / :func:`rle_decode` convert between masks and RLEs;
* :func:`rle_area`, :func:`rle_to_bbox`, :func:`rle_merge` and :func:`rle_iou` are the COCO API's
  ``area``, ``toBbox``, ``merge`` and ``iou``, computed on the runs (nothing is decoded);
* :func:`polygons_to_rle` and :func:`annotation_to_rle` turn COCO ``segmentation`` fields into RLEs
  the way ``COCO.annToRLE`` does, with the COCO API's own polygon rasteriser;
* :class:`RleBatch` holds many masks as flat arrays; the functions above and the COCO ``segm``
  evaluation use it to treat thousands of masks with a handful of NumPy calls.

Outputs are those of pycocotools with three differences of form: counts strings are ``str`` (not
``bytes``), decoded stacks are ``[N, H, W]`` (not ``[H, W, N]``), and an empty ``iou`` is a
``[D, G]`` array (not ``[]``). Where pycocotools reads out of bounds or silently returns garbage
(a corrupt string, counts that do not add up to ``h * w``, merging masks of different sizes) a
:class:`MaskFormatError` says what is wrong. Where it raises for polygons of four numbers or fewer,
they are rasterised like any other polygon, and an empty polygon list is an empty mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from cvzoo.ops._checks import MaskFormatError
from cvzoo.ops._polygon_raster import rasterize_polygons
from cvzoo.ops._rle_codec import decode_counts, encode_counts, local_index
from cvzoo.ops._rle_iou import RunIntervals, foreground_runs, iou_pairs, run_intervals
from cvzoo.ops._rle_merge import merge_pairs

__all__ = [
    "MaskFormatError",
    "RleBatch",
    "annotation_to_rle",
    "polygons_to_rle",
    "rle_area",
    "rle_decode",
    "rle_encode",
    "rle_iou",
    "rle_iou_pairs",
    "rle_merge",
    "rle_to_bbox",
]

Rle = dict[str, Any]


def _concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class RleBatch:
    """Many RLE masks as flat arrays.

    Each mask's counts add up to ``height * width`` (:meth:`from_rles` checks it, the other
    constructors guarantee it); the IoU on runs relies on that.

    Attributes:
        counts: ``[C]`` int64 run lengths of all masks, concatenated.
        offsets: ``[N+1]`` int64; mask ``i`` owns ``counts[offsets[i]:offsets[i + 1]]``.
        heights: ``[N]`` int64 mask heights.  widths: ``[N]`` int64 mask widths.
    """

    counts: np.ndarray
    offsets: np.ndarray
    heights: np.ndarray
    widths: np.ndarray

    def __len__(self) -> int:
        return int(self.heights.size)

    @classmethod
    def from_rles(cls, rles: Sequence[Mapping[str, Any]]) -> RleBatch:
        """Parse RLE dicts (compressed ``str``/``bytes`` counts or uncompressed int lists).

        Raises:
            MaskFormatError: ``index`` set to the first bad RLE.
        """
        rles = list(rles)
        try:
            sizes = [rle["size"] for rle in rles]
            all_counts = [rle["counts"] for rle in rles]
            hw = np.array(sizes, dtype=np.float64).reshape(len(rles), 2)
        except (KeyError, TypeError, ValueError, IndexError):
            _raise_first_malformed(rles)
            raise
        compressed = [isinstance(c, (str, bytes)) for c in all_counts]
        string_at = [i for i, c in enumerate(compressed) if c]
        list_at = [i for i, c in enumerate(compressed) if not c]
        strings = [all_counts[i] for i in string_at]
        lists = [_uncompressed_counts(all_counts[i], i) for i in list_at]
        if hw.size and ((hw < 0).any() or (hw != np.round(hw)).any()):
            i = int(np.flatnonzero(((hw < 0) | (hw != np.round(hw))).any(axis=1))[0])
            raise MaskFormatError(f"RLE 'size' must be two non-negative integers, got {sizes[i]!r:.80}", i)
        try:
            counts_s, offsets_s = decode_counts(strings)
        except MaskFormatError as err:
            raise MaskFormatError(str(err), string_at[err.index]) from None
        offsets_l = np.r_[0, np.cumsum([c.size for c in lists], dtype=np.int64)]
        batch = _join([(counts_s, offsets_s), (_concat(lists), offsets_l)], [string_at, list_at], len(sizes))
        out = cls(batch[0], batch[1], hw[:, 0].astype(np.int64), hw[:, 1].astype(np.int64))
        out.check_totals()
        return out

    @classmethod
    def from_segmentations(cls, segmentations: Sequence[Any], heights: Sequence[int], widths: Sequence[int]) -> RleBatch:
        """RLEs of COCO ``segmentation`` fields, each as :func:`annotation_to_rle`, polygons rasterised together.

        Args:
            segmentations: polygon lists, uncompressed or compressed RLE dicts.
            heights, widths: image size of each item (used by polygons; RLEs carry their own size).

        Raises:
            MaskFormatError: ``index`` set to the first bad item.
        """
        heights = np.asarray(heights, dtype=np.int64).reshape(-1)
        widths = np.asarray(widths, dtype=np.int64).reshape(-1)
        polys, poly_item, poly_at, rles, rle_at = [], [], [], [], []
        for i, seg in enumerate(segmentations):
            kind = type(seg)
            if kind is list or kind is tuple:
                if heights[i] < 0 or widths[i] < 0:
                    raise MaskFormatError("polygons need the image height and width", i)
                poly_at.append(i)
                for p in seg:
                    polys.append(_polygon_array(p, i))
                    poly_item.append(len(poly_at) - 1)
            elif kind is dict or isinstance(seg, Mapping):
                rles.append(seg)
                rle_at.append(i)
            else:
                raise MaskFormatError(f"a segmentation must be polygons or an RLE dict, got {type(seg).__name__}", i)
        try:
            rle_batch = cls.from_rles(rles)
        except MaskFormatError as err:
            raise MaskFormatError(str(err), rle_at[err.index]) from None
        try:
            poly_counts = _polygons_per_item(polys, np.array(poly_item, dtype=np.int64), heights[poly_at], widths[poly_at])
        except MaskFormatError as err:
            raise MaskFormatError(str(err), poly_at[poly_item[err.index]]) from None
        counts, offsets = _join([(rle_batch.counts, rle_batch.offsets), poly_counts], [rle_at, poly_at], len(heights))
        out_h, out_w = heights.copy(), widths.copy()
        out_h[rle_at], out_w[rle_at] = rle_batch.heights, rle_batch.widths
        return cls(counts, offsets, out_h, out_w)

    def check_totals(self) -> None:
        """Raise :class:`MaskFormatError` unless every mask's runs add up to ``height * width``."""
        csum = np.r_[0, np.cumsum(self.counts)]
        totals = csum[self.offsets[1:]] - csum[self.offsets[:-1]]
        bad = totals != self.heights * self.widths
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MaskFormatError(
                f"RLE runs add up to {int(totals[i])} pixels, but size {int(self.heights[i])}x{int(self.widths[i])} "
                f"has {int(self.heights[i] * self.widths[i])} (corrupt counts or wrong size)", i)

    def take(self, index: np.ndarray) -> RleBatch:
        """The masks at ``index`` (any order, repeats allowed)."""
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        lengths = np.diff(self.offsets)[index]
        start = np.repeat(self.offsets[:-1][index], lengths)
        gather = start + local_index(np.r_[0, np.cumsum(lengths)])
        return RleBatch(self.counts[gather], np.r_[0, np.cumsum(lengths)], self.heights[index], self.widths[index])

    def to_rles(self) -> list[Rle]:
        """Compressed RLE dicts (``counts`` a ``str``)."""
        strings = encode_counts(self.counts, self.offsets)
        return [{"size": [h, w], "counts": s} for h, w, s in zip(self.heights.tolist(), self.widths.tolist(), strings)]

    def to_uncompressed(self) -> list[Rle]:
        """Uncompressed RLE dicts (``counts`` a list of ints)."""
        off = self.offsets.tolist()
        counts = self.counts.tolist()
        return [{"size": [h, w], "counts": counts[off[i] : off[i + 1]]}
                for i, (h, w) in enumerate(zip(self.heights.tolist(), self.widths.tolist()))]

    @cached_property
    def intervals(self) -> RunIntervals:
        """The foreground runs on one global axis (what the IoU on runs searches)."""
        return run_intervals(self.counts, self.offsets, self.heights, self.widths)

    @cached_property
    def _areas(self) -> np.ndarray:
        csum = np.r_[0, np.cumsum(np.where(foreground_runs(self.offsets), self.counts, 0))]
        return csum[self.offsets[1:]] - csum[self.offsets[:-1]]

    @cached_property
    def _bboxes(self) -> np.ndarray:
        runs, n = self.intervals, len(self)
        xs, xe = self.widths.copy(), np.zeros(n, dtype=np.int64)
        ys, ye = self.heights.copy(), np.zeros(n, dtype=np.int64)
        per_mask = np.diff(runs.offsets)
        some = np.flatnonzero(per_mask > 0)
        if some.size:
            h = np.repeat(self.heights[some], per_mask[some])
            first = runs.global_start - np.repeat(runs.base[some], per_mask[some])
            last = first + runs.length - 1
            x0, y0, x1, y1 = first // h, first % h, last // h, last % h
            group = runs.offsets[some]
            # Runs are in pixel order: the first run starts in the leftmost column, the last ends in
            # the rightmost.
            xs[some] = x0[group]
            xe[some] = x1[runs.offsets[some + 1] - 1]
            ys[some] = np.minimum.reduceat(y0, group)
            ye[some] = np.maximum.reduceat(y1, group)
            # A run that wraps into the next column covers the full height.
            wraps = some[np.maximum.reduceat(x0 < x1, group)]
            ys[wraps], ye[wraps] = 0, self.heights[wraps] - 1
        # The reference computes in uint32 (a mask whose foreground runs all have length 0 wraps
        # around) and gives zeros when there are fewer than two runs.
        boxes = np.stack([xs, ys, (xe - xs + 1) % 2**32, (ye - ys + 1) % 2**32], axis=1).astype(np.float64)
        boxes[np.diff(self.offsets) < 2] = 0.0
        return boxes

    def areas(self) -> np.ndarray:
        """``[N]`` int64 foreground pixels (the odd runs); computed once, do not modify."""
        return self._areas

    def bboxes(self) -> np.ndarray:
        """``[N, 4]`` float64 ``xywh`` boxes as ``pycocotools.mask.toBbox`` (zeros for an empty mask);
        computed once, do not modify."""
        return self._bboxes

    def decode(self) -> list[np.ndarray]:
        """The masks as ``[H, W]`` uint8 arrays."""
        values = (local_index(self.offsets) % 2).astype(np.uint8)
        flat = np.repeat(values, self.counts)
        ends = np.r_[0, np.cumsum(self.heights * self.widths)].tolist()
        return [flat[ends[i] : ends[i + 1]].reshape(w, h).T
                for i, (h, w) in enumerate(zip(self.heights.tolist(), self.widths.tolist()))]


def _join(parts: list[tuple[np.ndarray, np.ndarray]], positions: Sequence[Sequence[int] | np.ndarray], total: int) -> tuple[np.ndarray, np.ndarray]:
    """Interleave batches: item ``j`` of ``parts[p]`` goes to position ``positions[p][j]`` of the result."""
    for (counts, offsets), pos in zip(parts, positions):
        if len(pos) == total and (np.asarray(pos) == np.arange(total)).all():
            return counts, offsets  # one part holds everything, in order: nothing to gather
    counts = _concat([c for c, _ in parts])
    lengths = _concat([np.diff(o) for _, o in parts])
    source = np.empty(total, dtype=np.int64)
    source[_concat([np.asarray(p, dtype=np.int64) for p in positions])] = np.arange(lengths.size)
    starts = np.r_[0, np.cumsum(lengths)][:-1]
    taken = lengths[source]
    gather = np.repeat(starts[source], taken) + local_index(np.r_[0, np.cumsum(taken)])
    return counts[gather], np.r_[0, np.cumsum(taken)]


def _raise_first_malformed(rles: list[Any]) -> None:
    """Name the first RLE that is not ``{"size": [h, w], "counts": ...}`` (the slow path of from_rles)."""
    for i, rle in enumerate(rles):
        if not isinstance(rle, Mapping) or "counts" not in rle or "size" not in rle:
            raise MaskFormatError(f"an RLE must be a dict with 'size' and 'counts', got {rle!r:.80}", i)
        try:
            [float(v) for v in rle["size"]]
            ok = len(rle["size"]) == 2
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise MaskFormatError(f"RLE 'size' must be [height, width], got {rle['size']!r:.80}", i)


def _uncompressed_counts(counts: Any, index: int) -> np.ndarray:
    try:
        arr = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        raise MaskFormatError(f"uncompressed RLE counts must be a list of integers, got {counts!r:.80}", index) from None
    if arr.ndim != 1 or (arr < 0).any() or (arr != np.round(arr)).any() or (arr > 0xFFFFFFFF).any():
        raise MaskFormatError(f"uncompressed RLE counts must be non-negative integers, got {counts!r:.80}", index)
    return arr.astype(np.int64)


def _polygon_array(polygon: Any, index: int) -> np.ndarray:
    try:
        arr = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        raise MaskFormatError(f"a polygon must be a flat list of numbers [x0, y0, x1, y1, ...], got {polygon!r:.80}",
                              index) from None
    if arr.ndim != 1:
        raise MaskFormatError(f"a polygon must be a flat list [x0, y0, x1, y1, ...], got shape {list(arr.shape)}", index)
    return arr


def _polygons_per_item(
    polys: list[np.ndarray], item: np.ndarray, heights: np.ndarray, widths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One RLE per item: its polygons rasterised, then merged in order, as ``merge(frPyObjects(...))``.

    ``item`` maps each polygon to its item (non-decreasing); an item without polygons is empty.
    """
    num = heights.size
    per_poly = RleBatch(*rasterize_polygons(polys, heights[item], widths[item]), heights[item], widths[item])
    per_item = np.bincount(item, minlength=num)
    first = np.r_[0, np.cumsum(per_item)][:-1]
    totals = heights * widths
    has, empty = np.flatnonzero(per_item > 0), np.flatnonzero(per_item == 0)
    start = per_poly.take(first[has])
    counts, offsets = _join([(start.counts, start.offsets), (totals[empty], np.arange(empty.size + 1))],
                            [has, empty], num)
    # The reference folds the polygons left to right; fold all items' k-th polygons at once.
    for k in range(1, int(per_item.max()) if num else 0):
        more, rest = np.flatnonzero(per_item > k), np.flatnonzero(per_item <= k)
        acc = RleBatch(counts, offsets, heights, widths)
        nxt, cur = per_poly.take(first[more] + k), acc.take(more)
        merged = merge_pairs((cur.counts, cur.offsets), (nxt.counts, nxt.offsets), totals[more], intersect=False)
        kept = acc.take(rest)
        counts, offsets = _join([merged, (kept.counts, kept.offsets)], [more, rest], num)
    return counts, offsets


def _to_batch(rles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> tuple[RleBatch, bool]:
    single = isinstance(rles, Mapping)
    return RleBatch.from_rles([rles] if single else list(rles)), single


def rle_encode(masks: np.ndarray | torch.Tensor, compressed: bool = True) -> Rle | list[Rle]:
    """RLE of a binary mask ``[H, W]`` or of each mask of a stack ``[N, H, W]``.

    Any non-zero value is foreground. Equal to ``pycocotools.mask.encode`` (which wants a Fortran
    ``uint8 [H, W, N]`` array) with the counts string as ``str``.

    Args:
        masks: numpy array or torch tensor (any device), bool or integer.
        compressed: ``False`` gives ``counts`` as a list of ints (uncompressed RLE).

    Returns:
        ``{"size": [H, W], "counts": ...}``, or a list of them for a stack.
    """
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    arr = np.asarray(masks)
    if arr.ndim not in (2, 3):
        raise MaskFormatError(f"rle_encode: masks must be [H, W] or [N, H, W], got shape {list(arr.shape)}")
    stack = arr[None] if arr.ndim == 2 else arr
    n, h, w = stack.shape
    if n == 0:
        return []
    flat = (stack != 0).transpose(0, 2, 1).reshape(n, h * w)
    # Toggle positions per mask: where the value changes, plus the image end closing the last run.
    toggles = np.zeros((n, h * w + 1), dtype=bool)
    toggles[:, -1] = True
    if h * w:
        toggles[:, 0] = flat[:, 0]
        toggles[:, 1:-1] = flat[:, 1:] != flat[:, :-1]
    owner, position = np.nonzero(toggles)
    first = np.r_[True, owner[1:] != owner[:-1]]
    counts = np.where(first, position, position - np.r_[0, position[:-1]]).astype(np.int64)
    offsets = np.r_[0, np.cumsum(np.bincount(owner, minlength=n))]
    batch = RleBatch(counts, offsets, np.full(n, h, dtype=np.int64), np.full(n, w, dtype=np.int64))
    out = batch.to_rles() if compressed else batch.to_uncompressed()
    return out[0] if arr.ndim == 2 else out


def rle_decode(rles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Binary uint8 mask ``[H, W]`` of one RLE, or ``[N, H, W]`` of a list of RLEs of one size."""
    batch, single = _to_batch(rles)
    if len(batch) == 0:
        raise MaskFormatError("rle_decode: no RLE given")
    if (batch.heights != batch.heights[0]).any() or (batch.widths != batch.widths[0]).any():
        raise MaskFormatError("rle_decode: the RLEs of a list must have one size")
    masks = batch.decode()
    return masks[0] if single else np.stack(masks)


def rle_area(rles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> int | np.ndarray:
    """Foreground pixels: an int for one RLE, ``[N]`` int64 for a list (``pycocotools.mask.area``)."""
    batch, single = _to_batch(rles)
    areas = batch.areas()
    return int(areas[0]) if single else areas


def rle_to_bbox(rles: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Bounding box ``[x, y, w, h]`` float64 (``[N, 4]`` for a list), as ``pycocotools.mask.toBbox``."""
    batch, single = _to_batch(rles)
    boxes = batch.bboxes()
    return boxes[0] if single else boxes


def rle_merge(rles: Sequence[Mapping[str, Any]], intersect: bool = False) -> Rle:
    """Union (or intersection) of RLEs of one size, as ``pycocotools.mask.merge``."""
    batch, _ = _to_batch(rles)
    if len(batch) == 0:
        raise MaskFormatError("rle_merge: no RLE given")
    if (batch.heights != batch.heights[0]).any() or (batch.widths != batch.widths[0]).any():
        raise MaskFormatError("rle_merge: all RLEs must have one size, got "
                              f"{sorted({(int(h), int(w)) for h, w in zip(batch.heights, batch.widths)})}")
    acc = batch.take([0])
    total = acc.heights * acc.widths
    for i in range(1, len(batch)):
        nxt = batch.take([i])
        counts, offsets = merge_pairs((acc.counts, acc.offsets), (nxt.counts, nxt.offsets), total, intersect)
        acc = RleBatch(counts, offsets, acc.heights, acc.widths)
    return acc.to_rles()[0]


def rle_iou(
    dets: Sequence[Mapping[str, Any]], gts: Sequence[Mapping[str, Any]], iscrowd: Sequence[bool | int]
) -> np.ndarray:
    """``[D, G]`` IoU of every detection with every ground truth, as ``pycocotools.mask.iou``.

    With ``iscrowd[g]`` the IoU is intersection / detection area. Pairs of different sizes whose
    boxes overlap get -1 (the reference's convention).
    """
    det_batch, _ = _to_batch(dets)
    gt_batch, _ = _to_batch(gts)
    crowd = np.asarray(iscrowd, dtype=bool).reshape(-1)
    if crowd.size != len(gt_batch):
        raise ValueError(f"rle_iou: iscrowd has {crowd.size} entries for {len(gt_batch)} ground truths")
    d, g = len(det_batch), len(gt_batch)
    det_idx, gt_idx = np.repeat(np.arange(d), g), np.tile(np.arange(g), d)
    return rle_iou_pairs(det_batch, det_idx, gt_batch, gt_idx, crowd[gt_idx]).reshape(d, g)


def rle_iou_pairs(
    dets: RleBatch, det_index: np.ndarray, gts: RleBatch, gt_index: np.ndarray, crowd: np.ndarray
) -> np.ndarray:
    """``[P]`` IoU of the pairs ``(dets[det_index[p]], gts[gt_index[p]])``, the rules of :func:`rle_iou`.

    Args:
        dets, gts: the masks.  det_index, gt_index: ``[P]`` positions in them.
        crowd: ``[P]`` bool, the ground truth of the pair is a crowd region.
    """
    return iou_pairs(dets, det_index, gts, gt_index, np.asarray(crowd, dtype=bool))


def polygons_to_rle(polygons: Sequence[Sequence[float]], height: int, width: int) -> Rle:
    """One RLE of the union of polygons ``[[x0, y0, x1, y1, ...], ...]``.

    Equal to ``pycocotools.mask.merge(pycocotools.mask.frPyObjects(polygons, height, width))``.
    """
    return RleBatch.from_segmentations([list(polygons)], [height], [width]).to_rles()[0]


def annotation_to_rle(segmentation: Any, height: int, width: int) -> Rle:
    """Compressed RLE of a COCO ``segmentation`` field, as ``COCO.annToRLE``.

    Args:
        segmentation: a list of polygons, an uncompressed RLE (``counts`` a list) or a compressed one.
        height, width: the image size (used by polygons; an RLE carries its own).
    """
    return RleBatch.from_segmentations([segmentation], [height], [width]).to_rles()[0]
