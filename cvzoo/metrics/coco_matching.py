"""Vectorised COCO matching (boxes or masks): the per-image, per-category step of COCO evaluation.

The COCO protocol (Lin et al., "Microsoft COCO: Common Objects in Context", 2014, and the reference
``cocoeval`` of the COCO API) matches, in every (image, category) group, the detections in
descending score order to the still-free ground-truth box of highest IoU, once per IoU threshold
and once per area range (the area range changes which ground truths are "ignored", and ignored
ones are only matched when no regular one is available).

The reference does this with four nested Python loops over 1.6 M (image, category, area) cells for
COCO val. Here every (image, category) group is processed at once:

* candidate (detection, ground truth) pairs are built for all groups in one flat array, their IoU
  computed with the exact floating-point expression of the reference (so threshold comparisons
  come out bit-identical), and pairs below the lowest threshold are dropped;
* the greedy matching is sequential only *within* a group, so we loop over the detection rank
  (at most ``max_det`` steps) and resolve rank ``r`` of every group, for all area ranges and all IoU
  thresholds, with one segmented ``maximum.reduceat``.

Boxes are ``xywh`` in absolute pixels, as in COCO JSON. Only the IoU of a candidate pair depends on
what is compared: boxes by default, or any ``pair_iou`` function (``cvzoo.metrics.coco_segm`` gives
the mask IoU of ``iou_type="segm"``); pairing, matching and accumulation are shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cvzoo.ops.masks import RleBatch

PairIoU = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""IoU of candidate pairs: ``f(det_rows, gt_rows) -> [P] float64``, rows into the input arrays."""

# The reference caps the match threshold just below 1 so that an IoU of exactly 1 still matches at 1.0.
_MAX_MATCH_IOU = 1 - 1e-10


@dataclass(frozen=True)
class GroundTruthArrays:
    """Ground-truth boxes as flat arrays (one row per annotation, any order).

    Attributes:
        image_index: ``[G]`` int64 index of the image (0..num_images-1, in sorted image-id order).
        category_index: ``[G]`` int64 index of the category (0..num_categories-1).
        boxes: ``[G, 4]`` float64 ``xywh`` boxes.
        areas: ``[G]`` float64 areas used for the area ranges (the annotation ``area`` field in COCO).
        iscrowd: ``[G]`` bool crowd flags: IoU with a crowd region is intersection / detection area,
            and a crowd region can absorb any number of detections without counting them.
        ignore: ``[G]`` bool extra ignore flags (e.g. VOC "difficult"); pycocotools has no such
            input (it overwrites ``ignore`` with ``iscrowd``), so ``coco_eval`` passes all False.
        ids: ``[G]`` int64 annotation ids. The reference marks "matched" by a non-zero id, so a
            ground truth with id 0 never yields a true positive; we reproduce that quirk.
        masks: the ``[G]`` segmentation masks for ``iou_type="segm"``, else None.
    """

    image_index: np.ndarray
    category_index: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    iscrowd: np.ndarray
    ignore: np.ndarray
    ids: np.ndarray
    masks: RleBatch | None = None


@dataclass(frozen=True)
class DetectionArrays:
    """Detections as flat arrays (one row per detection, in result-file order).

    Attributes:
        image_index: ``[D]`` int64 image index (same indexing as the ground truth).
        category_index: ``[D]`` int64 category index.
        boxes: ``[D, 4]`` float64 ``xywh`` boxes; may be None when ``areas`` is given and the IoU
            comes from a ``pair_iou`` (mask detections).
        scores: ``[D]`` float64 confidences.
        areas: ``[D]`` float64 areas for the area ranges; None means the box areas ``w * h``.
        masks: the ``[D]`` segmentation masks for ``iou_type="segm"``, else None.
    """

    image_index: np.ndarray
    category_index: np.ndarray
    boxes: np.ndarray | None
    scores: np.ndarray
    areas: np.ndarray | None = None
    masks: RleBatch | None = None


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching, with detections in group order (image, category, score desc).

    Attributes:
        det_index: ``[D']`` index into the input detections of each kept detection (at most
            ``max_det`` per (image, category), as in the reference).
        det_image: ``[D']`` image index.  det_category: ``[D']`` category index.
        det_score: ``[D']`` score.  det_rank: ``[D']`` rank inside its (image, category) group.
        det_outside: ``[A, D']`` bool, detection area outside area range ``a``.
        cand: ``[S]`` positions (into the ``D'`` arrays) of detections with at least one ground
            truth at IoU >= the lowest threshold; every other detection is unmatched everywhere.
        cand_gt: ``[A, T, S]`` matched ground-truth index (into the ground-truth arrays) or -1.
        gt_ignored: ``[A, G]`` bool, ground truth ignored in area range ``a`` (crowd, ignore flag or
            area outside the range).
    """

    det_index: np.ndarray
    det_image: np.ndarray
    det_category: np.ndarray
    det_score: np.ndarray
    det_rank: np.ndarray
    det_outside: np.ndarray
    cand: np.ndarray
    cand_gt: np.ndarray
    gt_ignored: np.ndarray

    def candidate_flags(self, gt_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """True-positive and ignored flags of the candidate detections.

        Args:
            gt_ids: ``[G]`` annotation ids (for the reference's id-0 quirk).

        Returns:
            ``(tp, ignored)``, both ``[A, T, S]`` bool.
        """
        matched = self.cand_gt >= 0
        safe = np.where(matched, self.cand_gt, 0)
        matched_nonzero = matched & (gt_ids[safe] != 0)
        gt_ig = np.take_along_axis(self.gt_ignored[:, None, :], safe, axis=2)
        outside = self.det_outside[:, self.cand][:, None, :]
        ignored = (matched & gt_ig) | (~matched_nonzero & outside)
        return matched_nonzero & ~ignored, ignored

    def dense_flags(self, gt_ids: np.ndarray, area_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """True-positive and ignored flags of every kept detection for one area range.

        Returns:
            ``(tp, ignored)``, both ``[T, D']`` bool.
        """
        tp_c, ig_c = self.candidate_flags(gt_ids)
        num_thr = tp_c.shape[1]
        tp = np.zeros((num_thr, self.det_index.size), dtype=bool)
        ignored = np.repeat(self.det_outside[area_index][None, :], num_thr, axis=0)
        tp[:, self.cand] = tp_c[area_index]
        ignored[:, self.cand] = ig_c[area_index]
        return tp, ignored


def coco_box_iou_pairs(det_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of aligned (detection, ground truth) pairs with the COCO API's arithmetic.

    The operations and their order follow the reference C code so that results are bit-identical
    (matching compares IoUs with ``>=`` against thresholds such as 0.5, where one ulp matters).
    Box areas are ``w * h`` of the boxes, not the annotation ``area`` field.

    Args:
        det_xywh: ``[P, 4]`` float64 detection boxes ``xywh``.
        gt_xywh: ``[P, 4]`` float64 ground-truth boxes ``xywh``.
        crowd: ``[P]`` bool; for crowd pairs the union is the detection area alone.

    Returns:
        ``[P]`` float64 IoU (0 for disjoint boxes).
    """
    dx, dy, dw, dh = det_xywh.T
    gx, gy, gw, gh = gt_xywh.T
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = w * h
    det_area = dw * dh
    union = np.where(crowd, det_area, det_area + gw * gh - inter)
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    return np.where((w > 0) & (h > 0), iou, 0.0)


def _ranges_to_flags(areas: np.ndarray, area_ranges: np.ndarray) -> np.ndarray:
    """``[A, N]`` bool: area outside the closed range ``[lo, hi]`` (the reference's convention)."""
    lo = area_ranges[:, 0:1]
    hi = area_ranges[:, 1:2]
    return (areas[None, :] < lo) | (areas[None, :] > hi)


def match_detections(
    gt: GroundTruthArrays,
    dt: DetectionArrays,
    num_categories: int,
    iou_thresholds: np.ndarray,
    area_ranges: np.ndarray,
    max_det: int,
    pair_iou: PairIoU | None = None,
) -> MatchResult:
    """Greedy COCO matching of all groups, area ranges and IoU thresholds at once.

    Args:
        gt: ground truth arrays.
        dt: detection arrays.
        num_categories: number of category indices.
        iou_thresholds: ``[T]`` IoU thresholds.
        area_ranges: ``[A, 2]`` closed area ranges.
        max_det: detections kept per (image, category), highest scores first.
        pair_iou: IoU of the (detection, ground truth) pairs of one image and category, given as
            rows of ``dt`` and ``gt``; None compares the boxes (:func:`coco_box_iou_pairs`).

    Returns:
        The :class:`MatchResult`.
    """
    num_thr = iou_thresholds.size
    # --- detections: group order (image, category, score desc); ties keep file order (stable
    # mergesort in the reference), lexsort is stable too.
    order = np.lexsort((-dt.scores, dt.category_index, dt.image_index))
    d_key = dt.image_index[order] * num_categories + dt.category_index[order]
    n_det = order.size
    new_group = np.ones(n_det, dtype=bool)
    new_group[1:] = d_key[1:] != d_key[:-1]
    group_start = np.flatnonzero(new_group)
    starts_per_det = group_start[np.cumsum(new_group) - 1] if n_det else np.zeros(0, np.int64)
    rank = np.arange(n_det) - starts_per_det
    keep = rank < max_det
    order, d_key, rank = order[keep], d_key[keep], rank[keep]
    d_box = dt.boxes[order] if dt.boxes is not None else None
    d_area = d_box[:, 2] * d_box[:, 3] if dt.areas is None else dt.areas[order]
    det_outside = _ranges_to_flags(d_area, area_ranges)

    # --- ground truth: group order (image, category, file order).
    g_key_all = gt.image_index * num_categories + gt.category_index
    g_order = np.argsort(g_key_all, kind="stable")
    g_key = g_key_all[g_order]
    gt_ignored = gt.ignore | gt.iscrowd
    gt_ignored_a = gt_ignored[None, :] | _ranges_to_flags(gt.areas, area_ranges)

    # --- all (detection, gt) pairs of the same group, as flat arrays.
    lo = np.searchsorted(g_key, d_key, side="left")
    hi = np.searchsorted(g_key, d_key, side="right")
    counts = hi - lo
    total = int(counts.sum())
    pair_det = np.repeat(np.arange(d_key.size), counts)
    offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_gt = g_order[np.repeat(lo, counts) + offsets]
    if pair_iou is None:
        iou = coco_box_iou_pairs(d_box[pair_det], gt.boxes[pair_gt], gt.iscrowd[pair_gt])
    else:
        iou = pair_iou(order[pair_det], pair_gt)
    thr = np.minimum(iou_thresholds, _MAX_MATCH_IOU)
    useful = iou >= thr.min()
    pair_det, pair_gt, iou = pair_det[useful], pair_gt[useful], iou[useful]

    cand, pair_slot = np.unique(pair_det, return_inverse=True)
    num_area = area_ranges.shape[0]
    cand_gt = np.full((num_area, num_thr, cand.size), -1, dtype=np.int64)
    if pair_det.size:
        _greedy_by_rank(
            rank[pair_det], pair_slot, pair_gt, iou, thr, gt.iscrowd, gt_ignored_a, cand_gt
        )
    return MatchResult(
        det_index=order,
        det_image=dt.image_index[order],
        det_category=dt.category_index[order],
        det_score=dt.scores[order],
        det_rank=rank,
        det_outside=det_outside,
        cand=cand,
        cand_gt=cand_gt,
        gt_ignored=gt_ignored_a,
    )


def _greedy_by_rank(
    pair_rank: np.ndarray,
    pair_slot: np.ndarray,
    pair_gt: np.ndarray,
    pair_iou: np.ndarray,
    thr: np.ndarray,
    iscrowd: np.ndarray,
    gt_ignored_a: np.ndarray,
    cand_gt: np.ndarray,
) -> None:
    """Resolve the greedy matching rank by rank, writing matched gt indices into ``cand_gt``.

    For one detection the reference scans its group's ground truths (regular ones first, then
    ignored ones), skipping non-crowd ones already taken, and keeps the last one with the highest
    IoU ``>=`` the threshold, never trading a regular match for an ignored one. Sorting a
    detection's pairs by (IoU, gt order) makes "last with the highest IoU" the largest pair
    position, and adding the block size to the positions of regular ground truths ranks every
    regular candidate above every ignored one: a single integer max per detection.
    """
    order = np.lexsort((pair_gt, pair_iou, pair_slot, pair_rank))
    pair_rank, pair_slot = pair_rank[order], pair_slot[order]
    pair_gt, pair_iou = pair_gt[order], pair_iou[order]
    num_area, num_thr = gt_ignored_a.shape[0], thr.size
    consumed = np.zeros((num_area, num_thr, iscrowd.size), dtype=bool)
    above = pair_iou[None, :] >= thr[:, None]  # [T, P]
    regular = ~gt_ignored_a[:, pair_gt]  # [A, P]
    crowd = iscrowd[pair_gt]
    block_edges = np.flatnonzero(np.diff(pair_rank)) + 1
    block_starts = np.concatenate(([0], block_edges))
    block_ends = np.concatenate((block_edges, [pair_rank.size]))
    for start, end in zip(block_starts.tolist(), block_ends.tolist()):
        gts = pair_gt[start:end]
        slots = pair_slot[start:end]
        size = end - start
        free = crowd[start:end] | ~consumed[:, :, gts]  # [A, T, p]
        valid = free & above[None, :, start:end]
        key = np.arange(size) + size * regular[:, None, start:end]
        key = np.where(valid, key, -1)
        seg = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
        best = np.maximum.reduceat(key, seg, axis=2)  # [A, T, n_dets]
        hit = best >= 0
        chosen = gts[np.where(hit, best % size, 0)]
        a_hit, t_hit, d_hit = np.nonzero(hit)
        g_hit = chosen[a_hit, t_hit, d_hit]
        consumed[a_hit, t_hit, g_hit] = True
        cand_gt[:, :, slots[seg]] = np.where(hit, chosen, -1)


def accumulate(
    match: MatchResult,
    gt: GroundTruthArrays,
    num_categories: int,
    recall_thresholds: np.ndarray,
    max_dets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Precision at the recall thresholds and final recall, like the reference ``accumulate``.

    All detections of one category are ranked by score once (ties: image order, then rank in the
    image, as the reference's stable sort of the concatenated per-image lists gives). Only the
    true positives change recall, so the precision envelope at every recall threshold is the
    maximum precision over the true positives from the first one reaching that threshold on;
    it is computed for all categories and thresholds with integer bookkeeping (exact counts) and
    one ``maximum.reduceat``.

    Args:
        match: output of :func:`match_detections`.
        gt: the ground truth that was matched.
        num_categories: ``K``.
        recall_thresholds: ``[R]`` sorted recall thresholds.
        max_dets: ``[M]`` sorted per-image detection limits.

    Returns:
        ``precision [T, R, K, A, M]`` and ``recall [T, K, A, M]``, -1 where a category has no
        non-ignored ground truth in that area range.
    """
    num_area, num_thr, _ = match.cand_gt.shape
    num_rec, num_m, k = recall_thresholds.size, max_dets.size, num_categories
    precision = -np.ones((num_thr, num_rec, k, num_area, num_m))
    recall = -np.ones((num_thr, k, num_area, num_m))

    counted = ~match.gt_ignored  # [A, G]
    npig = np.stack([np.bincount(gt.category_index[c], minlength=k) for c in counted]).astype(np.int64)

    # Category-major ranking of all kept detections (stable: image order then rank in group).
    glob = np.lexsort((-match.det_score, match.det_category))
    position = np.empty_like(glob)
    position[glob] = np.arange(glob.size)
    cat_sorted = match.det_category[glob]
    cat_first = np.searchsorted(cat_sorted, np.arange(k), side="left")
    is_cand = np.zeros(glob.size, dtype=bool)
    is_cand[match.cand] = True

    # Candidates in ranking order.
    cand_order = np.argsort(position[match.cand], kind="stable")
    cand_pos = position[match.cand][cand_order]
    cand_cat = match.det_category[match.cand][cand_order]
    tp_c, ig_c = match.candidate_flags(gt.ids)
    tp_c, ig_c = tp_c[:, :, cand_order], ig_c[:, :, cand_order]
    cand_first = np.searchsorted(cand_cat, np.arange(k), side="left")
    cand_seg_start = cand_first[cand_cat]

    rank_sorted = match.det_rank[glob]
    outside_sorted = match.det_outside[:, glob]
    cand_sorted = is_cand[glob]
    eps = np.spacing(1)
    for m, max_det in enumerate(max_dets.tolist()):
        kept = rank_sorted < max_det
        kept_c = kept[cand_pos]
        for a in range(num_area):
            # Non-ignored detections that are never matched: same for every threshold.
            plain = kept & ~outside_sorted[a] & ~cand_sorted
            csum = np.concatenate(([0], np.cumsum(plain)))
            plain_before = csum[cand_pos + 1] - csum[cat_first[cand_cat]]
            counted_c = kept_c[None, :] & ~ig_c[a]  # [T, S]
            tp = kept_c[None, :] & tp_c[a]
            counted_cum = _segmented_cumsum(counted_c, cand_seg_start)
            tp_cum = _segmented_cumsum(tp, cand_seg_start)
            n_tp = np.zeros((num_thr, k), dtype=np.int64)
            t_ix, s_ix = np.nonzero(tp)
            q = np.zeros((num_thr * k, num_rec))
            if t_ix.size:
                cats = cand_cat[s_ix]
                tp_count = tp_cum[t_ix, s_ix].astype(np.float64)
                seen = (plain_before[s_ix] + counted_cum[t_ix, s_ix]).astype(np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    rc = tp_count / npig[a, cats]
                pr = tp_count / (seen + eps)
                seg = t_ix * k + cats
                q, n_flat = _precision_at_recalls(rc, pr, seg, num_thr * k, recall_thresholds)
                n_tp = n_flat.reshape(num_thr, k)
            has_gt = npig[a] > 0
            with np.errstate(divide="ignore", invalid="ignore"):
                rec = n_tp / npig[a][None, :]
            recall[:, :, a, m] = np.where(has_gt[None, :], rec, -1.0)
            q = q.reshape(num_thr, k, num_rec).transpose(0, 2, 1)
            precision[:, :, :, a, m] = np.where(has_gt[None, None, :], q, -1.0)
    return precision, recall


def _segmented_cumsum(flags: np.ndarray, seg_start: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sum along axis 1 restarting at each segment (``seg_start`` per column)."""
    csum = np.cumsum(flags, axis=1)
    padded = np.concatenate((np.zeros((flags.shape[0], 1), dtype=csum.dtype), csum), axis=1)
    return csum - padded[:, seg_start]


def _precision_at_recalls(
    rc: np.ndarray, pr: np.ndarray, seg: np.ndarray, num_seg: int, recall_thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Interpolated precision at each recall threshold for many curves at once.

    Args:
        rc: ``[N]`` recall at each true positive, sorted by ``seg`` then rank (so increasing).
        pr: ``[N]`` precision at each true positive.
        seg: ``[N]`` curve id, non-decreasing.
        num_seg: number of curves.
        recall_thresholds: ``[R]`` sorted thresholds.

    Returns:
        ``q [num_seg, R]`` (0 where the recall is never reached) and ``n_tp [num_seg]``.
    """
    num_rec = recall_thresholds.size
    n_tp = np.bincount(seg, minlength=num_seg)
    seg_start = np.cumsum(n_tp) - n_tp
    # thresholds <= rc at each true positive; the first TP reaching threshold r is at local index
    # #{TP with fewer than r+1 thresholds below or at it}, exactly np.searchsorted(rc, thr, "left").
    below = np.searchsorted(recall_thresholds, rc, side="right")
    hist = np.bincount(seg * (num_rec + 1) + below, minlength=num_seg * (num_rec + 1))
    first = np.cumsum(hist.reshape(num_seg, num_rec + 1), axis=1)[:, :num_rec]
    valid = first < n_tp[:, None]
    bounds = (seg_start[:, None] + first)[valid]
    chunk_max = np.maximum.reduceat(pr, bounds)
    env = np.zeros((num_seg, num_rec))
    env[valid] = chunk_max
    # Right-to-left running max over chunks = max precision from that recall on (the envelope).
    env = np.maximum.accumulate(env[:, ::-1], axis=1)[:, ::-1]
    return np.where(valid, env, 0.0), n_tp
