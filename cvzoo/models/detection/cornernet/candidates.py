"""The corner pairs a correct runtime may decode from CornerNet's maps, and those it must: the export check.

``decode_corners`` selects by comparing values: a corner is a heatmap peak when no neighbour in its 3x3
window scores higher, the top ``K`` peaks are kept, and a pair is valid when its embeddings are closer
than 0.5 and the bottom-right corner is not left of or above the top-left one. Each comparison between
two values closer than the float error of two runtimes (~1e-6) may come out either way in an exported
graph, and a barely trained model, whose heatmaps are nearly flat, has many such near-ties (the K-th peak
and the next one, two neighbours): onnxruntime then decodes other corners than PyTorch, its rows move,
and an element-wise comparison reports boxes "24 pixels apart" between two correct decodings.

So from PyTorch's maps this module takes every comparison within ``tol`` of flipping both ways: the pairs a
runtime *may* decode (a corner that may be a peak and may be among the top ``K``, a pair that may be valid)
and those it *must* (every comparison holding with ``tol`` to spare). ``tol`` is relative for scores: a
runtime's error on a sigmoid score ``s`` whose logit is off by ``d`` is ``s (1 - s) d``, and a barely
trained model's scores all sit near the heatmap prior 0.1, where an absolute 1e-4 would allow a logit 1e-3
off; it is absolute for embedding distances and pixels. The check then matches the other runtime's rows
against them (``cvzoo.models.detection.export_check``). At ``tol = 0`` the candidates that must be decoded
are exactly PyTorch's own pairs wherever PyTorch met no exact tie.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvzoo.models.detection.cornernet.decode import flat_positions


def corner_choices(heatmap: torch.Tensor, k: int, tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which corners of one image's heatmap logits ``[C, H, W]`` a runtime may and must pick.

    Returns ``(scores, may, must)``, each ``[C * H * W]`` in the flat order of ``decode.top_corners``: the
    sigmoid scores; the corners that may be picked: a peak within a relative ``tol`` that scores no more
    than a relative ``tol`` below the ``k``-th certain peak (a runtime's ``k``-th peak scores at least that);
    the corners that must be: a peak by more than a relative ``tol`` that scores more than a relative ``tol``
    above the ``k + 1``-th possible peak (then at most ``k - 1`` other peaks can outrank it in any runtime).
    Where a map has fewer peaks than that rank, the rank's score is 0: every peak is picked (the top ``k``
    ends in zeros, which pair with nothing).
    """
    scores = heatmap.sigmoid()
    # The 8 neighbours of each position (scores are >= 0, so -1 outside the map never wins).
    windows = F.pad(scores, (1, 1, 1, 1), value=-1.0).unfold(1, 3, 1).unfold(2, 3, 1).flatten(-2)  # [C, H, W, 9]
    neighbours = torch.cat([windows[..., :4], windows[..., 5:]], dim=-1).amax(dim=-1)
    scores, neighbours = scores.flatten(), neighbours.flatten()
    may_peak, must_peak = scores >= neighbours * (1 - tol), scores > neighbours * (1 + tol)
    k = min(k, scores.numel())

    def score_at_rank(peaks: torch.Tensor, rank: int) -> torch.Tensor:
        if rank > scores.numel():
            return scores.new_zeros(())
        return torch.where(peaks, scores, 0.0).topk(rank).values[-1]

    may = may_peak & (scores >= score_at_rank(must_peak, k) * (1 - tol))
    must = must_peak & (scores > score_at_rank(may_peak, k + 1) * (1 + tol))
    return scores, may, must


def corner_pair_candidates(
    tl_heatmap: torch.Tensor,
    br_heatmap: torch.Tensor,
    tl_embedding: torch.Tensor,
    br_embedding: torch.Tensor,
    tl_offset: torch.Tensor,
    br_offset: torch.Tensor,
    stride: int,
    k: int = 100,
    max_embedding_distance: float = 0.5,
    tol: float = 1e-4,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One image's candidate pairs ``[N, 4 + C]`` (as ``decode_corners`` writes a valid pair: xyxy input
    pixels, the pair's score at its class) and which of them a runtime must decode ``[N]``.

    The maps are one image's (``[C, H, W]``, ``[D, H, W]``, ``[2, H, W]``), as ``decode_corners`` takes
    them batched; ``tol`` applies to scores (relative, :func:`corner_choices`) and embedding distances, and
    ``2 * stride * tol`` to the pixel comparisons of the corners (each moved by an offset in map pixels).
    """
    num_classes = tl_heatmap.shape[0]
    tl, br = (_corners(heatmap, embedding, offset, stride, k, tol) for heatmap, embedding, offset in
              ((tl_heatmap, tl_embedding, tl_offset), (br_heatmap, br_embedding, br_offset)))
    pixel_tol = 2 * stride * tol
    # Pairs: top-left along dim 0, bottom-right along dim 1; the same arithmetic as decode_corners.
    distance = (tl["embedding"][:, None, :] - br["embedding"][None, :, :]).pow(2).sum(-1).sqrt()
    dx, dy = br["x"][None, :] - tl["x"][:, None], br["y"][None, :] - tl["y"][:, None]
    same_class = tl["class"][:, None] == br["class"][None, :]
    may = same_class & (distance < max_embedding_distance + tol) & (dx >= -pixel_tol) & (dy >= -pixel_tol)
    must = (may & tl["must"][:, None] & br["must"][None, :] & (distance < max_embedding_distance - tol)
            & (dx >= pixel_tol) & (dy >= pixel_tol))
    i, j = may.nonzero(as_tuple=True)
    rows = tl_heatmap.new_zeros(len(i), 4 + num_classes)
    rows[:, :4] = torch.stack((tl["x"][i], tl["y"][i], br["x"][j], br["y"][j]), dim=-1)
    rows[torch.arange(len(i)), 4 + tl["class"][i]] = (tl["score"][i] + br["score"][j]) / 2
    return rows, must[i, j]


def _corners(heatmap: torch.Tensor, embedding: torch.Tensor, offset: torch.Tensor, stride: int, k: int,
             tol: float) -> dict[str, torch.Tensor]:
    """The corners of one type a runtime may pick: class, score, position in input pixels, embedding, and
    whether it must be picked."""
    _, height, width = heatmap.shape
    scores, may, must = corner_choices(heatmap, k, tol)
    flat = may.nonzero(as_tuple=True)[0]
    classes, index, xs, ys = flat_positions(flat, height, width)
    offsets = offset.flatten(1)[:, index]  # [2, M]
    return {"class": classes, "score": scores[flat], "must": must[flat],
            "x": (xs.to(scores.dtype) + offsets[0]) * stride, "y": (ys.to(scores.dtype) + offsets[1]) * stride,
            "embedding": embedding.flatten(1)[:, index].T}
